#!/usr/bin/env node
// Plays one HLS or DASH stream in headless Chromium with the vendored hls.js or dash.js and prints
// one JSON report of what happened on stdout (crates/test-support/src/players/report.rs reads it).
//
//   node play.mjs --player hls|dash --url http://127.0.0.1:PORT/master.m3u8
//                 [--force-levels] [--level-seconds 1] [--timeout 60] [--rate 16] [--stall 8] [--verbose]
//
// The page and the players come from a server of this harness on 127.0.0.1 (node_modules, as
// installed by scripts/install-players.sh); every request to anything but 127.0.0.1 is blocked and
// listed. The stream must be served with `Access-Control-Allow-Origin` (another origin).
//
// What it does: loads the stream muted and waits until a frame was shown (`started`). With
// --force-levels it then plays at 1x and forces each level in turn (hls.js: `currentLevel = i`;
// dash.js: `setRepresentationForTypeByIndex('video', i, true)`, ABR switching off), a level being
// `reached` when the player says frames of that level play and the <video> shows frames of its
// size for --level-seconds of playback; it seeks back to 0 first when too little is left for that. Then it
// plays to the end at --rate (default 16, Chromium's highest): every segment is still fetched
// and decoded, nothing is skipped by seeking.
// It stops waiting on a fatal player error, when the clock has not moved for --stall seconds, or at
// --timeout (`timed_out`).
//
// Exit 0 when the report was printed, whatever it says: a stream that fails to play is a finding,
// not a failure of the harness. Exit 1 (with the reason on stderr) when the harness itself failed:
// node_modules or Chromium missing, Chromium not starting; 2 on a usage error.
import { mkdtempSync, readFileSync, rmSync, existsSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const HERE = fileURLToPath(new URL('.', import.meta.url));
const INSTALL = 'scripts/install-players.sh';

// The vendored players: the same files any page of the project can use.
const PLAYERS = {
  hls: { file: 'node_modules/hls.js/dist/hls.min.js', path: '/hls.min.js' },
  dash: { file: 'node_modules/dashjs/dist/modern/umd/dash.all.min.js', path: '/dash.all.min.js' },
};

function die(msg, code = 1) {
  process.stderr.write(`play.mjs: ${msg}\n`);
  process.exit(code);
}

let opts;
try {
  opts = parseArgs({
    options: {
      player: { type: 'string' },
      url: { type: 'string' },
      'force-levels': { type: 'boolean', default: false },
      'level-seconds': { type: 'string', default: '1' },
      timeout: { type: 'string', default: '60' },
      rate: { type: 'string', default: '16' },
      stall: { type: 'string', default: '8' },
      verbose: { type: 'boolean', default: false },
    },
  }).values;
} catch (e) {
  die(`${e.message}\nusage: node play.mjs --player hls|dash --url URL [--force-levels] [--timeout 60]`, 2);
}
if (!PLAYERS[opts.player]) die('--player must be hls or dash', 2);
if (!opts.url) die('--url is required', 2);
const timeoutMs = Number(opts.timeout) * 1000;
const rate = Number(opts.rate);
const stallMs = Number(opts.stall) * 1000;
const levelSeconds = Number(opts['level-seconds']);
if (!(timeoutMs > 0) || !(rate > 0 && rate <= 16) || !(stallMs > 0) || !(levelSeconds >= 0)) {
  die('--timeout, --stall > 0, --level-seconds >= 0 and 0 < --rate <= 16', 2);
}
const log = opts.verbose ? (m) => process.stderr.write(`play.mjs: ${m}\n`) : () => {};

const playerFile = join(HERE, PLAYERS[opts.player].file);
if (!existsSync(playerFile)) die(`${playerFile} is missing: run ${INSTALL}`);
let puppeteer;
try {
  puppeteer = (await import('puppeteer-core')).default;
} catch (e) {
  die(`puppeteer-core is missing (${e.message}): run ${INSTALL}`);
}
const chromium = process.env.CHROMIUM || '/usr/bin/chromium';
if (!existsSync(chromium)) die(`Chromium is missing at ${chromium}: run ${INSTALL} (or set CHROMIUM)`);

const started = Date.now();
const deadline = started + timeoutMs;
// A last guard: whatever hangs, the harness ends (and says so) a little after --timeout.
const guard = setTimeout(() => die(`the harness hung past --timeout ${opts.timeout}s`), timeoutMs + 20000);

// The page, the page script and the player, from loopback.
const html = `<!doctype html>
<html><head><meta charset="utf-8"><link rel="icon" href="data:,"><title>${opts.player} harness</title></head>
<body><video id="video" muted playsinline style="width:640px"></video>
<script src="${PLAYERS[opts.player].path}"></script><script src="/page.js"></script></body></html>`;
const files = {
  '/': ['text/html; charset=utf-8', Buffer.from(html)],
  '/page.js': ['text/javascript', readFileSync(join(HERE, 'page.js'))],
  [PLAYERS[opts.player].path]: ['text/javascript', readFileSync(playerFile)],
};
const server = createServer((req, res) => {
  const f = files[new URL(req.url, 'http://x').pathname];
  if (!f) {
    res.writeHead(404).end();
    return;
  }
  res.writeHead(200, { 'content-type': f[0], 'content-length': f[1].length, 'cache-control': 'no-store' }).end(f[1]);
});
await new Promise((ok) => server.listen(0, '127.0.0.1', ok));
const origin = `http://127.0.0.1:${server.address().port}`;

const profile = mkdtempSync(join(tmpdir(), 'players-chromium-'));
let browser;
try {
  browser = await puppeteer.launch({
    executablePath: chromium,
    headless: true,
    pipe: true,
    userDataDir: profile,
    protocolTimeout: timeoutMs + 10000,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-proxy-server',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--autoplay-policy=no-user-gesture-required',
    ],
  });
} catch (e) {
  rmSync(profile, { recursive: true, force: true });
  die(`Chromium (${chromium}) did not start: ${e.message}`);
}

const blocked = [];
const httpErrors = [];
const harnessErrors = [];
let finished = false;

async function finish(code) {
  if (finished) return;
  finished = true;
  clearTimeout(guard);
  await browser.close().catch(() => {});
  server.close();
  rmSync(profile, { recursive: true, force: true });
  process.exit(code);
}
process.on('SIGTERM', () => finish(1));
process.on('SIGINT', () => finish(1));

let report;
try {
  report = await play();
} catch (e) {
  process.stderr.write(`play.mjs: the harness failed: ${e.stack || e}\n`);
  await finish(1);
}
process.stdout.write(`${JSON.stringify(report)}\n`);
await finish(0);

/** Whether the page may fetch `url`: loopback (127.0.0.1) and the browser's own data/blob URLs. */
function allowed(url) {
  if (url.startsWith('data:') || url.startsWith('blob:')) return true;
  try {
    return new URL(url).hostname === '127.0.0.1';
  } catch {
    return false;
  }
}

async function play() {
  const page = await browser.newPage();
  await page.setRequestInterception(true);
  page.on('request', (r) => {
    if (allowed(r.url())) r.continue();
    else {
      blocked.push(r.url());
      r.abort('blockedbyclient');
    }
  });
  page.on('response', (r) => {
    if (r.status() >= 400) httpErrors.push({ url: r.url(), status: r.status() });
  });
  page.on('pageerror', (e) => harnessErrors.push({ fatal: true, type: 'pageerror', details: String(e.message || e) }));
  page.on('error', (e) => harnessErrors.push({ fatal: true, type: 'crash', details: String(e.message || e) }));
  if (opts.verbose) page.on('console', (m) => log(`console.${m.type()}: ${m.text()}`));

  await page.goto(`${origin}/`, { waitUntil: 'load' });
  const mse = await page.evaluate(() => ({
    h264: MediaSource.isTypeSupported('video/mp4; codecs="avc1.64001f"'),
    aac: MediaSource.isTypeSupported('audio/mp4; codecs="mp4a.40.2"'),
  }));
  await page.evaluate((p, u, f) => window.harness.load(p, u, f), opts.player, opts.url, opts['force-levels']);
  log(`loading ${opts.url} with ${opts.player}`);

  const snapshot = async () => {
    const s = await page.evaluate(() => window.harness.state());
    s.errors = s.errors.concat(harnessErrors);
    return s;
  };
  let stalled = false;
  let timedOut = false;
  // Polls until `pred(state)` holds, a fatal error, a stall, `limitMs` or the deadline.
  const waitFor = async (pred, limitMs = Infinity) => {
    const until = Math.min(deadline, Date.now() + limitMs);
    let clock = { at: Date.now(), t: -1 };
    for (;;) {
      const s = await snapshot();
      if (pred(s)) return [true, s];
      if (s.errors.some((e) => e.fatal)) return [false, s];
      if (s.current_time !== clock.t) clock = { at: Date.now(), t: s.current_time };
      else if (Date.now() - clock.at > stallMs) {
        stalled = true;
        return [false, s];
      }
      if (Date.now() >= until) {
        if (Date.now() >= deadline) timedOut = true;
        return [false, s];
      }
      await new Promise((ok) => setTimeout(ok, 100));
    }
  };

  let [ok, s] = await waitFor((s) => s.started);
  log(`started: ${ok}`);
  const switches = [];
  if (ok && opts['force-levels']) {
    await page.evaluate(() => window.harness.setRate(1));
    for (const level of s.levels) {
      if (s.duration && s.duration - s.current_time < levelSeconds + 2) await page.evaluate(() => window.harness.seek(0));
      const t0 = Date.now();
      await page.evaluate((i) => window.harness.forceLevel(i), level.index);
      let shownAt = null;
      [ok, s] = await waitFor((s) => {
        const shown = s.playing_level === level.index && s.video_width === level.width && s.video_height === level.height;
        if (!shown) shownAt = null;
        else if (shownAt === null) shownAt = s.current_time;
        return shown && s.current_time > shownAt && s.current_time >= shownAt + levelSeconds;
      }, 15000 + levelSeconds * 1000);
      switches.push({
        to_level: level.index,
        width: level.width,
        height: level.height,
        reached: ok,
        seconds: (Date.now() - t0) / 1000,
      });
      log(`level ${level.index} (${level.width}x${level.height}) reached: ${ok}`);
      if (!ok && (stalled || timedOut || s.errors.some((e) => e.fatal))) break;
      stalled = false;
    }
  }
  if (s.started && !stalled && !timedOut && !s.errors.some((e) => e.fatal)) {
    await page.evaluate((r) => window.harness.setRate(r), rate);
    [ok, s] = await waitFor((s) => s.ended);
    log(`ended: ${ok}`);
  }
  return {
    player: opts.player,
    version: s.version,
    url: opts.url,
    started: s.started,
    levels: s.levels,
    audio_tracks: s.audio_tracks,
    subtitle_tracks: s.subtitle_tracks,
    subtitle_cues: s.subtitle_cues,
    forced: opts['force-levels'],
    switches,
    ended: s.ended,
    ended_at: s.ended_at,
    duration: s.duration,
    current_time: s.current_time,
    errors: s.errors,
    http_errors: httpErrors,
    blocked_requests: blocked,
    segments_loaded: s.segments_loaded,
    video_width: s.video_width,
    video_height: s.video_height,
    sizes_seen: s.sizes_seen,
    stalled,
    timed_out: timedOut,
    rate,
    mse,
    elapsed_seconds: (Date.now() - started) / 1000,
  };
}
