// The browser side of the harness (play.mjs serves it with the vendored hls.js or dash.js): plays
// one stream in a muted <video> and keeps what happened in `window.harness`, which play.mjs reads
// and drives (forcing a level, the playback rate, seeking). Nothing here loads from elsewhere.
/* global Hls, dashjs */
'use strict';

(() => {
  const video = document.getElementById('video');

  // What the report is made of; play.mjs reads a snapshot of it through `harness.state()`.
  const state = {
    player: null,
    version: null,
    // `playing` fired and the clock moved: a frame was shown.
    started: false,
    levels: [],
    audio_tracks: [],
    subtitle_tracks: [],
    // The most cues the <video> element's enabled text tracks held at once: the first subtitle
    // track is turned on when there is one, so its WebVTT is fetched and parsed.
    subtitle_cues: 0,
    // The level whose frames are on screen now (hls: the playing fragment's level; dash: the
    // representation of the last rendered quality change), or null before any.
    playing_level: null,
    ended: false,
    // Where the clock was when the end was first reached (the element's `ended`, or dash.js's
    // PLAYBACK_ENDED, whichever came first: `by`), the duration then, and what the element had
    // buffered. Afterwards a player may move the clock again: dash.js, when it sees the end
    // before the element fires `ended`, seeks to half a second before the end and pauses.
    ended_at: null,
    errors: [],
    segments_loaded: 0,
    // Every distinct frame size the <video> element showed, in order.
    sizes_seen: [],
  };

  // A frame rate as a number: 29.97, "30", "30000/1001"; null when unsaid.
  const rate = (r) => {
    if (r === undefined || r === null || r === '') return null;
    const [n, d] = String(r).split('/').map(Number);
    const v = d ? n / d : n;
    return Number.isFinite(v) && v > 0 ? Math.round(v * 1000) / 1000 : null;
  };

  let hls = null;
  let dash = null;

  const error = (e) => {
    state.errors.push(e);
  };

  const countCues = () => {
    let n = 0;
    for (const t of video.textTracks) {
      if (t.mode !== 'disabled' && t.cues) n += t.cues.length;
    }
    state.subtitle_cues = Math.max(state.subtitle_cues, n);
  };

  const sizeSeen = () => {
    const w = video.videoWidth;
    const h = video.videoHeight;
    const last = state.sizes_seen[state.sizes_seen.length - 1];
    if (w && h && (!last || last[0] !== w || last[1] !== h)) state.sizes_seen.push([w, h]);
  };

  video.addEventListener('playing', () => {
    const t0 = video.currentTime;
    const check = () => {
      if (video.currentTime > t0 || video.currentTime > 0) state.started = true;
      else if (!state.started) requestAnimationFrame(check);
    };
    check();
  });
  video.addEventListener('timeupdate', () => {
    if (video.currentTime > 0 && !video.paused) state.started = true;
  });
  video.addEventListener('resize', sizeSeen);
  video.addEventListener('loadedmetadata', sizeSeen);
  const ranges = (r) => Array.from({ length: r.length }, (_, i) => [r.start(i), r.end(i)]);
  const endReached = (by) => {
    state.ended = true;
    if (state.ended_at) return;
    const duration = Number.isFinite(video.duration) ? video.duration : null;
    state.ended_at = { by, current_time: video.currentTime, duration, buffered: ranges(video.buffered) };
  };
  video.addEventListener('ended', () => endReached('element'));
  video.addEventListener('error', () => {
    const e = video.error;
    error({ fatal: true, type: 'media', details: `MediaError ${e && e.code}: ${(e && e.message) || ''}` });
  });

  function loadHls(url) {
    if (!Hls.isSupported()) {
      error({ fatal: true, type: 'harness', details: 'hls.js says this browser has no MSE support' });
      return;
    }
    hls = new Hls({ debug: false, enableWorker: true });
    state.version = Hls.version;
    hls.on(Hls.Events.MANIFEST_PARSED, (_e, data) => {
      state.levels = data.levels.map((l, index) => ({
        index,
        width: l.width || 0,
        height: l.height || 0,
        bitrate: l.bitrate || 0,
        average_bitrate: Number(l.attrs['AVERAGE-BANDWIDTH']) || null,
        frame_rate: rate(l.attrs['FRAME-RATE']),
        codecs: l.attrs.CODECS || [l.videoCodec, l.audioCodec].filter(Boolean).join(','),
      }));
    });
    hls.on(Hls.Events.AUDIO_TRACKS_UPDATED, (_e, data) => {
      state.audio_tracks = data.audioTracks.map((t, index) => ({
        index,
        lang: t.lang || '',
        label: t.name || '',
        codecs: t.audioCodec || '',
        default: !!t.default,
      }));
    });
    hls.on(Hls.Events.SUBTITLE_TRACKS_UPDATED, (_e, data) => {
      state.subtitle_tracks = data.subtitleTracks.map((t) => ({ lang: t.lang || '', label: t.name || '' }));
      setTimeout(subtitlesOn, 0);
    });
    hls.on(Hls.Events.FRAG_LOADED, (_e, data) => {
      if (data.frag.sn !== 'initSegment') state.segments_loaded += 1;
    });
    // The first subtitle track, on: set while hls.js starts loading, it is reset to none (no
    // DEFAULT=YES), so it is set again once playback runs.
    const subtitlesOn = () => {
      if (hls.subtitleTrack < 0 && hls.subtitleTracks.length) {
        hls.subtitleDisplay = true;
        hls.subtitleTrack = 0;
      }
    };
    hls.on(Hls.Events.FRAG_CHANGED, (_e, data) => {
      state.playing_level = data.frag.level;
      subtitlesOn();
    });
    hls.on(Hls.Events.ERROR, (_e, data) => {
      error({
        fatal: !!data.fatal,
        type: data.type || '',
        details: data.details || '',
        url: (data.frag && data.frag.url) || data.url || (data.context && data.context.url) || null,
        status: (data.response && data.response.code) || null,
      });
    });
    hls.attachMedia(video);
    hls.loadSource(url);
  }

  function loadDash(url, forceLevels) {
    dash = dashjs.MediaPlayer().create();
    // A forced level must stay: the ABR rules must not switch away from it.
    if (forceLevels) dash.updateSettings({ streaming: { abr: { autoSwitchBitrate: { video: false } } } });
    state.version = dash.getVersion();
    const ev = dashjs.MediaPlayer.events;
    dash.on(ev.STREAM_INITIALIZED, () => {
      state.levels = dash.getRepresentationsByType('video').map((r, index) => ({
        index,
        width: r.width || 0,
        height: r.height || 0,
        bitrate: r.bandwidth || 0,
        average_bitrate: null,
        frame_rate: rate(r.frameRate),
        codecs: r.codecs || '',
        id: r.id,
      }));
      state.audio_tracks = dash.getTracksFor('audio').map((t, index) => ({
        index,
        lang: t.lang || '',
        label: (t.labels && t.labels[0] && t.labels[0].text) || '',
        codecs: t.codec || '',
        default: false,
      }));
      state.subtitle_tracks = dash.getTracksFor('text').map((t) => ({
        lang: t.lang || '',
        label: (t.labels && t.labels[0] && t.labels[0].text) || '',
      }));
    });
      if (state.subtitle_tracks.length) {
        dash.enableText(true);
        dash.setTextTrack(0);
      }
    dash.on(ev.FRAGMENT_LOADING_COMPLETED, (e) => {
      if (e.request && e.request.type === 'MediaSegment') state.segments_loaded += 1;
    });
    // dash.js's own end: its clock check saw the end of the last period.
    dash.on(ev.PLAYBACK_ENDED, (e) => {
      if (!e || e.isLast !== false) endReached('dash.js');
    });
    dash.on(ev.QUALITY_CHANGE_RENDERED, (e) => {
      if (e.mediaType !== 'video' || !e.newRepresentation) return;
      const i = state.levels.findIndex((l) => l.id === e.newRepresentation.id);
      state.playing_level = i >= 0 ? i : null;
    });
    // dash.js retries on its own and raises `error` only when it gives up: every one is fatal.
    dash.on(ev.ERROR, (e) => {
      const err = e.error || {};
      error({ fatal: true, type: 'dash', details: `${err.code || ''} ${err.message || ''}`.trim(), url: null, status: null });
    });
    dash.on(ev.PLAYBACK_ERROR, (e) => {
      error({ fatal: true, type: 'playback', details: String((e.error && e.error.message) || e.error || ''), url: null, status: null });
    });
    dash.initialize(video, url, true);
  }

  window.harness = {
    load(player, url, forceLevels) {
      state.player = player;
      if (player === 'hls') loadHls(url);
      else loadDash(url, forceLevels);
      const p = video.play();
      if (p) p.catch(() => {});
    },
    // Shows level `i` as soon as possible (the buffer ahead is dropped).
    forceLevel(i) {
      if (hls) hls.currentLevel = i;
      else dash.setRepresentationForTypeByIndex('video', i, true);
    },
    setRate(r) {
      video.playbackRate = r;
    },
    seek(t) {
      video.currentTime = t;
    },
    state() {
      sizeSeen();
      countCues();
      const { levels, ...rest } = state;
      return {
        ...rest,
        levels: levels.map(({ id: _id, ...l }) => l),
        duration: Number.isFinite(video.duration) ? video.duration : null,
        current_time: video.currentTime,
        paused: video.paused,
        video_width: video.videoWidth,
        video_height: video.videoHeight,
        ended: state.ended || video.ended,
      };
    },
  };
})();
