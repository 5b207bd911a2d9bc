// The link worker: owns the WebSocket and the whole audio path (microphone chunks from
// the capture worklet out, the robot's voice into the player worklet), so neither waits
// for the main thread. Face frames, text and states go on to the main thread, each with
// the context frame at which to present it: stamp offset + presentation delay after the
// first microphone sample sent. A display (the web_head node: no microphone, stamps on
// the robot's clock) starts the clock when the server says hello instead.
// A display drawing a head by blendshapes gets BLENDSHAPES frames (the morph weights)
// where the others get FACE.
const KIND = { HELLO: 0x01, AUDIO: 0x02, VIDEO: 0x03, END: 0x04, ROBOT_AUDIO: 0x10, TEXT: 0x11, FACE: 0x12,
               STATE: 0x13, BLENDSHAPES: 0x14 };
const MODEL_RATE = 24000;

let socket = null, hello = null, rate = 0, micFrame0 = null, player = null, nextId = 0, micSent = 0;
const sentAt = [];  // performance.now() when each step's last microphone sample was sent
const pending = new Map();  // chunk id -> {micFrame, rms}

function presentFrame(offsetNs) {
  return micFrame0 + Math.round((offsetNs / 1e9 + hello.presentation_delay_ms / 1000) * rate);
}

function resample(samples, from, to) {
  if (from === to) return samples;
  const out = new Float32Array(Math.round(samples.length * to / from));
  for (let i = 0; i < out.length; i++) {
    const x = i * from / to, j = Math.floor(x), f = x - j;
    out[i] = (samples[j] || 0) * (1 - f) + (samples[j + 1] || 0) * f;
  }
  return out;
}

function sendMic({ frame, samples }) {
  if (!socket || socket.readyState !== WebSocket.OPEN || !hello) return;
  if (micFrame0 === null) micFrame0 = frame;
  const message = new ArrayBuffer(5 + 2 * samples.length);
  const view = new DataView(message);
  view.setUint8(0, KIND.AUDIO);
  view.setUint32(1, rate, true);
  for (let i = 0; i < samples.length; i++) {
    view.setInt16(5 + 2 * i, Math.max(-32768, Math.min(32767, Math.round(samples[i] * 32768))), true);
  }
  socket.send(message);
  micSent += samples.length;
  const stepFrames = Math.round(rate * hello.step_ms / 1000);
  while ((sentAt.length + 1) * stepFrames <= micSent) sentAt.push(performance.now());
  postMessage({ type: "mic" });
}

function onRobotAudio(offsetNs, samples) {
  let sum = 0;
  for (const s of samples) sum += s * s;
  const id = nextId++;
  const step = Math.round(offsetNs / 1e6 / hello.step_ms);
  if (sentAt[step] !== undefined) postMessage({ type: "rtt", ms: performance.now() - sentAt[step] });
  pending.set(id, { micFrame: micFrame0 + Math.round(offsetNs / 1e9 * rate), rms: Math.sqrt(sum / samples.length) });
  const chunk = resample(samples, MODEL_RATE, rate);
  player.postMessage({ id, frame: presentFrame(offsetNs), samples: chunk }, [chunk.buffer]);
  postMessage({ type: "audio" });
}

function onPlayed({ id, late, arrived, frame, now }) {
  if (now !== undefined) { micFrame0 = now; return; }
  const chunk = pending.get(id);
  pending.delete(id);
  if (!chunk) return;
  postMessage({ type: "played", late, arrivalMs: (arrived - chunk.micFrame) / rate * 1000,
                playedMs: (frame - chunk.micFrame) / rate * 1000,
                speakingUntil: !late && chunk.rms > 0.01 ? frame + Math.round(0.08 * rate) : 0 });
}

function onMessage(data) {
  const view = new DataView(data);
  const kind = view.getUint8(0);
  if (kind === KIND.HELLO || kind === KIND.STATE) {
    const json = JSON.parse(new TextDecoder().decode(new Uint8Array(data, 1)));
    if (kind === KIND.HELLO) {
      hello = json;
      if (hello.display) player.postMessage({ now: true });  // no microphone: the clock starts now
    }
    else postMessage({ type: "state", state: json.state, message: json.message });
    return;
  }
  if (micFrame0 === null) return;
  const offsetNs = Number(view.getBigInt64(1, true));
  if (kind === KIND.ROBOT_AUDIO) onRobotAudio(offsetNs, new Float32Array(data.slice(9)));
  else if (kind === KIND.TEXT) {
    const text = new TextDecoder().decode(new Uint8Array(data, 9));
    postMessage({ type: "text", frame: presentFrame(offsetNs), text });
  } else if (kind === KIND.FACE) {
    const displacements = view.getUint8(9) === 1 ? new Float32Array(data.slice(10)) : null;
    postMessage({ type: "face", frame: presentFrame(offsetNs), offsetNs, displacements },
                displacements ? [displacements.buffer] : []);
  } else if (kind === KIND.BLENDSHAPES) {
    const weights = new Float32Array(data.slice(9));
    postMessage({ type: "face", frame: presentFrame(offsetNs), offsetNs, weights }, [weights.buffer]);
  }
}

onmessage = (event) => {
  const command = event.data;
  if (command.type === "start") {
    rate = command.rate;
    if (command.capture) command.capture.onmessage = (message) => sendMic(message.data);
    player = command.player;
    player.onmessage = (message) => onPlayed(message.data);
    socket = new WebSocket(command.url);
    socket.binaryType = "arraybuffer";
    socket.onmessage = (message) => onMessage(message.data);
    socket.onclose = () => postMessage({ type: "closed" });
    socket.onerror = () => postMessage({ type: "state", state: "error", message: "the connection failed" });
  } else if (command.type === "video" && socket && socket.readyState === WebSocket.OPEN && micFrame0 !== null) {
    const message = new Uint8Array(1 + command.jpeg.byteLength);
    message[0] = KIND.VIDEO;
    message.set(new Uint8Array(command.jpeg), 1);
    socket.send(message);
  } else if (command.type === "end" && socket && socket.readyState === WebSocket.OPEN) {
    socket.send(new Uint8Array([KIND.END]));
  }
};
