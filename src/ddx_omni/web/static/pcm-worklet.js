// AudioWorklet: hands the microphone's mono samples to the page in blocks (the page resamples and frames them).
class PcmCapture extends AudioWorkletProcessor {
  constructor() {
    super();
    this.block = new Float32Array(2048);
    this.used = 0;
  }

  process(inputs) {
    const channel = inputs[0] && inputs[0][0];
    if (channel) {
      let i = 0;
      while (i < channel.length) {
        const n = Math.min(this.block.length - this.used, channel.length - i);
        this.block.set(channel.subarray(i, i + n), this.used);
        this.used += n;
        i += n;
        if (this.used === this.block.length) {
          this.port.postMessage(this.block.slice());
          this.used = 0;
        }
      }
    }
    return true;
  }
}

registerProcessor('pcm-capture', PcmCapture);
