// The page's two audio threads. Both count time in frames of the one AudioContext, which
// is the page's only clock: the microphone's samples are numbered on it and the robot's
// voice is placed on it, so the presentation delay is exact to the sample. Both talk to the
// link worker over their own MessagePort (sent to them first), so the voice never waits
// for the main thread, which may be busy drawing the face.

// Microphone -> link worker: fixed chunks, each with the context frame of its first
// sample; its RMS also goes to the main thread for the level meter.
class Capture extends AudioWorkletProcessor {
  constructor(options) {
    super();
    this.size = options.processorOptions.chunkFrames;
    this.buffer = new Float32Array(this.size);
    this.filled = 0;
    this.firstFrame = 0;
    this.link = null;
    this.port.onmessage = (event) => { this.link = event.data.port; };
  }

  process(inputs) {
    const input = inputs[0] && inputs[0][0];
    if (!input) return true;
    for (let i = 0; i < input.length; i++) {
      if (this.filled === 0) this.firstFrame = currentFrame + i;
      this.buffer[this.filled++] = input[i];
      if (this.filled === this.size) this.flush();
    }
    return true;
  }

  flush() {
    let sum = 0;
    for (let j = 0; j < this.size; j++) sum += this.buffer[j] * this.buffer[j];
    this.port.postMessage({ rms: Math.sqrt(sum / this.size) });
    if (this.link) {
      const samples = this.buffer.slice();
      this.link.postMessage({ frame: this.firstFrame, samples }, [samples.buffer]);
    }
    this.filled = 0;
  }
}

// Link worker -> speaker: a jitter buffer of chunks, each to start at a given context
// frame (its step's stamp + the presentation delay). A chunk whose time has passed
// entirely is dropped (late), silence fills any gap. For each chunk the link hears back
// the frame it arrived at and the frame its first sample went out (or that it was late).
class Player extends AudioWorkletProcessor {
  constructor() {
    super();
    this.queue = [];
    this.link = null;
    this.port.onmessage = (event) => {
      this.link = event.data.port;
      this.link.onmessage = (message) => {
        if (message.data.now) { this.link.postMessage({ now: currentFrame }); return; }
        const chunk = message.data;
        chunk.arrived = currentFrame;
        chunk.started = false;
        this.queue.push(chunk);
        this.queue.sort((a, b) => a.frame - b.frame);
      };
    };
  }

  report(chunk, late, frame) {
    this.link.postMessage({ id: chunk.id, late, arrived: chunk.arrived, frame });
  }

  process(inputs, outputs) {
    const out = outputs[0][0];
    const start = currentFrame;
    const end = start + out.length;
    out.fill(0);
    while (this.queue.length && this.queue[0].frame + this.queue[0].samples.length <= start) {
      const gone = this.queue.shift();
      if (!gone.started) this.report(gone, true, start);
    }
    for (const chunk of this.queue) {
      if (chunk.frame >= end) break;
      const from = Math.max(start, chunk.frame);
      const to = Math.min(end, chunk.frame + chunk.samples.length);
      for (let f = from; f < to; f++) out[f - start] = chunk.samples[f - chunk.frame];
      if (!chunk.started && to > from) {
        chunk.started = true;
        this.report(chunk, false, from);
      }
    }
    for (let c = 1; c < outputs[0].length; c++) outputs[0][c].set(out);
    return true;
  }
}

registerProcessor("moshiface-capture", Capture);
registerProcessor("moshiface-player", Player);
