// Plays a consultation's recording: its segments in order in one <video> element.
//
// Each segment starts with one POST of its playback URL carrying the bearer token (the gateway
// audits that playback and sets a cookie for that one recording); then the <video> element loads
// the same URL, and its GET and Range requests carry the cookie. A URL lives a few minutes: one
// that has expired (or is about to) is replaced by a fresh one from the Replay query first.

import { GatewayError, SignInRequired } from "./gateway.js";

const MARGIN_MS = 15_000;

export function expiresAt(url) {
  const exp = Number(new URL(url).searchParams.get("exp"));
  return Number.isFinite(exp) ? exp * 1000 : 0;
}

export class SegmentPlayer {
  // `refresh()` fetches the consultation again and returns its recordings (fresh URLs).
  constructor(video, gateway, { refresh, onSegment, onMessage, onSignInRequired }) {
    this.video = video;
    this.gateway = gateway;
    this.refresh = refresh;
    this.onSegment = onSegment;
    this.onMessage = onMessage;
    this.onSignInRequired = onSignInRequired;
    this.segments = [];
    this.index = -1;
    this.recovering = false;
    video.addEventListener("ended", () => this.next());
    video.addEventListener("error", () => this.recover());
    video.addEventListener("playing", () => {
      this.recovering = false;
      const what = this.segments[this.index].mode === "AUDIO" ? "audio" : "video";
      this.onMessage(`Playing segment ${this.index + 1} of ${this.segments.length} (${what}).`);
    });
  }

  load(recordings) {
    this.stop();
    this.segments = [...recordings].sort((a, b) => a.segmentIndex - b.segmentIndex);
  }

  stop() {
    this.index = -1;
    this.generation = (this.generation || 0) + 1;
    this.video.pause();
    this.video.removeAttribute("src");
    this.video.load();
  }

  url(index) {
    return this.gateway.mediaUrl(this.segments[index].playbackUrl);
  }

  async fresh(index) {
    const id = this.segments[index].id;
    const recordings = await this.refresh();
    this.segments = [...recordings].sort((a, b) => a.segmentIndex - b.segmentIndex);
    const found = this.segments.findIndex((segment) => segment.id === id);
    if (found < 0) {
      throw new GatewayError("This recording is no longer available to you.");
    }
    return found;
  }

  // Plays segment `index` from `from` seconds; false when the gateway refused it.
  async play(index, from = 0) {
    const generation = ++this.generation;
    this.video.pause();
    try {
      if (expiresAt(this.url(index)) - Date.now() < MARGIN_MS) {
        index = await this.fresh(index);
      }
      let status = await this.gateway.startPlayback(this.url(index));
      if (status === 403) {
        // Perhaps this device's clock is off and the URL expired: one more try, with a new one.
        index = await this.fresh(index);
        status = await this.gateway.startPlayback(this.url(index));
      }
      if (generation !== this.generation) {
        return false;
      }
      if (status !== 204) {
        this.onMessage(
          status === 403
            ? "This recording is not available to you."
            : `The recording could not be started (HTTP ${status}).`,
        );
        return false;
      }
      this.index = index;
      this.onSegment(index);
      // Audio is shown as audio: the element shrinks to its controls, and says what it plays.
      const audio = this.segments[index].mode === "AUDIO";
      this.video.classList.toggle("audio-only", audio);
      this.video.setAttribute("aria-label", audio ? "Audio recording" : "Video recording");
      this.video.src = this.url(index);
      if (from > 0) {
        this.video.currentTime = from;
      }
      await this.video.play();
      return true;
    } catch (error) {
      if (generation !== this.generation) {
        return false;
      }
      if (error instanceof SignInRequired) {
        this.stop();
        this.onSignInRequired(error);
        return false;
      }
      if (error && error.name === "NotAllowedError") {
        this.onMessage("Press play to start the recording.");
        return true;
      }
      if (error && error.name === "AbortError") {
        return false;
      }
      this.onMessage(
        error instanceof GatewayError ? error.message : "The recording could not be played.",
      );
      return false;
    }
  }

  async next() {
    if (this.index + 1 < this.segments.length) {
      await this.play(this.index + 1);
    } else {
      this.onMessage("End of the recording.");
    }
  }

  // The <video> element could not load its URL: the URL or its cookie expired while playing,
  // or access ended. Start the segment again, once, where it stopped; the gateway decides.
  async recover() {
    if (this.index < 0 || !this.video.getAttribute("src")) {
      return;
    }
    if (this.recovering) {
      this.onMessage("This recording could not be played.");
      return;
    }
    this.recovering = true;
    await this.play(this.index, this.video.currentTime || 0);
  }
}
