// The conversation page's main thread: it starts the audio graph and the link worker
// (which carry the voice both ways, see link.js), draws the robot's face with three.js at
// the moment its audio is heard, shows the captions, the mic level and the state. A face
// frame is vertex displacements, or, for a head drawn by blendshapes (a display whose hello
// names them), the weights of the head's morph targets, fetched once from /morphs.
import { FaceView } from "./face.js";

const MODEL_RATE = 24000;
const KEEP_FRAMES = 600;
const query = new URLSearchParams(location.search);
const token = query.get("token");
const withToken = (path) => token ? `${path}?token=${encodeURIComponent(token)}` : path;
const $ = (id) => document.getElementById(id);

// What the page measured; the browser test and the latency benchmark read it back.
const stats = { micChunks: 0, audioReceived: 0, audioPlayed: 0, audioLate: 0, faceReceived: 0, faceShown: 0,
                faceLate: 0, texts: 0, videoFrames: 0, roundTripMs: [], arrivalMs: [], playedMs: [], faceOffsetMs: [],
                errors: [] };
const page = { stats, frames: [], frozen: false, view: null, state: "idle" };
window.moshiface = page;

let ctx = null, link = null, faceFps = 25, speakingUntil = 0;
const faceQueue = [], textQueue = [];

function setState(state, message) {
  if (page.state === state && !message) return;
  page.state = state;
  const el = $("state");
  el.textContent = message ? `${state}: ${message}` : state;
  el.className = `state ${state}`;
}

function fromLink({ data }) {
  switch (data.type) {
    case "mic": stats.micChunks++; break;
    case "audio": stats.audioReceived++; break;
    case "rtt": stats.roundTripMs.push(data.ms); break;
    case "played":
      if (data.late) { stats.audioLate++; } else { stats.audioPlayed++; stats.playedMs.push(data.playedMs); }
      stats.arrivalMs.push(data.arrivalMs);
      speakingUntil = Math.max(speakingUntil, data.speakingUntil);
      break;
    case "text": stats.texts++; textQueue.push(data); break;
    case "face":
      stats.faceReceived++;
      faceQueue.push(data);
      page.frames.push(data);
      if (page.frames.length > KEEP_FRAMES) page.frames.shift();
      break;
    case "state":
      if (["error", "busy", "listening", "ended"].includes(data.state)) setState(data.state, data.message);
      break;
    case "closed":
      if (page.state !== "error" && page.state !== "busy") setState("ended");
      break;
  }
}

// The context frame being heard right now: what the face must match.
function heardFrame(now) {
  const stamp = ctx.getOutputTimestamp();
  if (stamp.contextTime > 0) return (stamp.contextTime + (now - stamp.performanceTime) / 1000) * ctx.sampleRate;
  return (ctx.currentTime - (ctx.outputLatency || 0) - ctx.baseLatency) * ctx.sampleRate;
}

let lastDraw = 0;

function animate(now) {
  requestAnimationFrame(animate);
  const period = Math.min(50, Math.max(4, now - lastDraw || 16.7));  // the display's refresh interval
  lastDraw = now;
  if (page.frozen) return;
  const heard = heardFrame(now);
  // a frame goes up on the refresh nearest its time: up to half a refresh early
  const early = period / 2000 * ctx.sampleRate;
  let chosen = null;
  while (faceQueue.length && faceQueue[0].frame <= heard + early) chosen = faceQueue.shift();
  if (chosen && heard - chosen.frame > ctx.sampleRate / (2 * faceFps)) {
    stats.faceLate++;  // came after its time, like a late voice chunk: skipped, not shown late
    chosen = null;
  }
  if (chosen) {
    page.view.showFrame(chosen);
    stats.faceShown++;
    stats.faceOffsetMs.push((heard - chosen.frame) / ctx.sampleRate * 1000);
  }
  while (textQueue.length && textQueue[0].frame <= heard) addCaption(textQueue.shift().text);
  if (page.state === "listening" || page.state === "speaking") {
    setState(heard < speakingUntil ? "speaking" : "listening");
  }
}

function addCaption(piece) {
  const el = $("captions");
  el.textContent = (el.textContent + piece.replace(/\u2581/g, " ")).slice(-160);
}

async function start() {
  $("start").disabled = true;
  setState("connecting");
  const hello = await (await fetch(withToken("/hello"))).json();
  faceFps = hello.face_fps;
  if (hello.vertices) {
    const mesh = await (await fetch(withToken("/mesh"))).json();
    const morphs = hello.blendshapes
      ? new Float32Array(await (await fetch(withToken("/morphs"))).arrayBuffer()) : null;
    page.view = new FaceView($("face"), mesh, morphs);
    page.view.showFrame(null);
  }
  ctx = new AudioContext({ sampleRate: MODEL_RATE, latencyHint: "interactive" });
  await ctx.audioWorklet.addModule("/static/worklets.js");
  const player = new AudioWorkletNode(ctx, "moshiface-player", { outputChannelCount: [1] });
  player.connect(ctx.destination);
  const toPlayer = new MessageChannel();
  player.port.postMessage({ port: toPlayer.port1 }, [toPlayer.port1]);
  const ports = { player: toPlayer.port2 };
  if (!hello.display) ports.capture = await startMicrophone();
  link = new Worker("/static/link.js");
  link.onmessage = fromLink;
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  link.postMessage({ type: "start", url: `${scheme}://${location.host}${withToken("/ws")}`, rate: ctx.sampleRate,
                     ...ports }, Object.values(ports));
  $("stop").disabled = false;
  if (page.view) requestAnimationFrame(animate);
  // the webcam is optional (no camera, or ?camera=0: the robot does not see the user)
  if (!hello.display && query.get("camera") !== "0") startWebcam().catch(() => {});
}

// The webcam, when allowed: small JPEG frames at the face rate to the server's tracker.
async function startWebcam() {
  const stream = await navigator.mediaDevices.getUserMedia({ video: { width: 320, height: 240, frameRate: 25 } });
  const video = document.createElement("video");
  video.muted = true;
  video.srcObject = stream;
  await video.play();
  const canvas = document.createElement("canvas");
  canvas.width = 320;
  canvas.height = 240;
  const draw = canvas.getContext("2d");
  let sending = false;
  setInterval(() => {
    if (sending || video.readyState < 2) return;
    sending = true;
    draw.drawImage(video, 0, 0, canvas.width, canvas.height);
    canvas.toBlob(async (blob) => {
      if (blob) {
        const jpeg = await blob.arrayBuffer();
        link.postMessage({ type: "video", jpeg }, [jpeg]);
        stats.videoFrames++;
      }
      sending = false;
    }, "image/jpeg", 0.7);
  }, 1000 / faceFps);
}

// The microphone into the capture worklet; returns the port on which its chunks come.
async function startMicrophone() {
  const stream = await navigator.mediaDevices.getUserMedia(
    { audio: { echoCancellation: true, noiseSuppression: false, autoGainControl: false, channelCount: 1 } });
  const capture = new AudioWorkletNode(ctx, "moshiface-capture",
                                       { processorOptions: { chunkFrames: Math.round(ctx.sampleRate * 0.08) } });
  capture.port.onmessage = ({ data }) => {
    $("meter-level").style.width = `${Math.min(100, Math.sqrt(data.rms) * 140)}%`;
  };
  ctx.createMediaStreamSource(stream).connect(capture);
  const toCapture = new MessageChannel();
  capture.port.postMessage({ port: toCapture.port1 }, [toCapture.port1]);
  return toCapture.port2;
}

// Test hooks: freeze the face on a received frame (returns the mouth's box on screen),
// how far the mouth moved in each kept frame, and ending the conversation.
page.freeze = (index) => {
  page.frozen = true;
  const frame = page.frames[index];
  page.view.showFrame(frame || null);
  return page.view.mouthBox(frame || null);
};
page.mouthMotion = () => page.frames.map((f) => page.view.mouthMotion(f));
page.stop = () => { if (link) link.postMessage({ type: "end" }); };

$("start").onclick = () => start().catch((error) => {
  stats.errors.push(String(error));
  setState("error", error.message);
});
$("stop").onclick = page.stop;
if (query.has("autostart")) $("start").click();
