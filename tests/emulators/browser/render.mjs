// Headless Chromium for tests: renders one page and prints what a person's browser would have complained about.
//
//   node render.mjs --unpack          once, at install: brotli-unpacks @sparticuz/chromium's Chromium, its
//                                     SwiftShader, fonts and fallback NSS libraries into ./browser/
//   node render.mjs URL [TIMEOUT_S]   prints one JSON line {url, title, errors, charts, svgs, launch_ms, render_ms}
//
// errors: uncaught exceptions ("pageerror: ..."), console.error messages ("console.error: ...") and failed
// requests ("requestfailed: ...") seen from navigation until the page has settled. charts: the plotly graph
// divs that drew at least one .main-svg; svgs: all .plotly-graph-div .main-svg elements.
// Exit 0 with the JSON whenever the page was rendered (errors or not); exit 2 with a message on stderr when
// the browser could not be launched or the page not loaded. Nothing here reaches the network by itself:
// the browser is the unpacked local file, and its background networking, updates and sync are off.
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const browserDir = join(here, "browser");
const executable = join(browserDir, "chromium");

const FLAGS = [
  "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync",
  "--disable-dev-shm-usage", "--no-default-browser-check", "--disable-domain-reliability", "--no-pings",
];

async function unpack() {
  const { inflate } = await import("@sparticuz/chromium");
  const bin = join(here, "node_modules", "@sparticuz", "chromium", "bin");
  mkdirSync(browserDir, { recursive: true });
  // inflate() writes into os.tmpdir(), which reads TMPDIR at each call.
  const saved = process.env.TMPDIR;
  process.env.TMPDIR = browserDir;
  try {
    for (const archive of ["chromium.br", "swiftshader.tar.br", "fonts.tar.br", "al2023.tar.br"]) {
      await inflate(join(bin, archive));
    }
  } finally {
    if (saved === undefined) delete process.env.TMPDIR; else process.env.TMPDIR = saved;
  }
  // The package's fonts.conf names Lambda's folders: ours keeps the system's fonts and adds the bundled Open Sans.
  writeFileSync(join(browserDir, "fonts.conf"), `<?xml version="1.0"?>
<!DOCTYPE fontconfig SYSTEM "fonts.dtd">
<fontconfig>
  <include ignore_missing="yes">/etc/fonts/fonts.conf</include>
  <dir>${join(browserDir, "fonts", "fonts")}</dir>
  <cachedir>${join(browserDir, "fonts-cache")}</cachedir>
</fontconfig>
`);
  if (!existsSync(executable)) throw new Error(`no chromium at ${executable} after unpacking`);
  console.log(executable);
}

async function launch(chromium, timeoutMs) {
  const env = { ...process.env, FONTCONFIG_FILE: join(browserDir, "fonts.conf") };
  const options = { executablePath: executable, args: FLAGS, timeout: timeoutMs, env };
  try {
    return await chromium.launch(options);
  } catch (error) {
    // A machine without libnss3/libnspr4/libexpat: use the copies the package ships (built for Amazon Linux 2023).
    if (!/error while loading shared libraries/.test(String(error))) throw error;
    const lib = join(browserDir, "al2023", "lib");
    env.LD_LIBRARY_PATH = [lib, process.env.LD_LIBRARY_PATH].filter(Boolean).join(":");
    return await chromium.launch(options);
  }
}

async function render(url, timeoutS) {
  const { chromium } = await import("playwright-core");
  const timeoutMs = Math.round(timeoutS * 1000);
  const begin = Date.now();
  let browser;
  try {
    browser = await launch(chromium, timeoutMs);
  } catch (error) {
    throw new Error(`launching ${executable} failed: ${error.message}`);
  }
  const launched = Date.now();
  try {
    const page = await browser.newPage();
    const errors = [];
    page.on("pageerror", (error) => errors.push(`pageerror: ${error.message}`));
    page.on("console", (message) => {
      if (message.type() === "error") errors.push(`console.error: ${message.text()}`);
    });
    page.on("requestfailed", (request) =>
      errors.push(`requestfailed: ${request.url().slice(0, 200)} ${request.failure()?.errorText ?? ""}`));
    let response;
    try {
      response = await page.goto(url, { waitUntil: "load", timeout: timeoutMs });
    } catch (error) {
      throw new Error(`loading ${url} failed: ${error.message}`);
    }
    if (response && !response.ok() && !url.startsWith("file:")) {
      errors.push(`http: ${response.status()} for ${url}`);
    }
    // Let timers, promises and two animation frames after load run (plotly draws within them).
    await page.evaluate(() => new Promise((resolve) =>
      requestAnimationFrame(() => requestAnimationFrame(() => setTimeout(resolve, 250)))));
    const found = await page.evaluate(() => {
      const divs = [...document.querySelectorAll(".plotly-graph-div")];
      return {
        charts: divs.filter((div) => div.querySelector(".main-svg")).length,
        svgs: document.querySelectorAll(".plotly-graph-div .main-svg").length,
      };
    });
    if (process.env.RENDER_SCREENSHOT) {  // a picture for a person to look at (the whole page)
      await page.setViewportSize({ width: 1400, height: 900 });
      await page.screenshot({ path: process.env.RENDER_SCREENSHOT, fullPage: true });
    }
    const title = await page.title();
    return { url, title, errors, ...found, launch_ms: launched - begin, render_ms: Date.now() - launched };
  } finally {
    await browser.close();
  }
}

try {
  const [first, second] = process.argv.slice(2);
  if (first === "--unpack") {
    await unpack();
  } else if (first) {
    console.log(JSON.stringify(await render(first, Number(second ?? 60))));
  } else {
    throw new Error("usage: node render.mjs --unpack | node render.mjs URL [TIMEOUT_S]");
  }
} catch (error) {
  process.stderr.write(`render.mjs: ${error.message}\n`);
  process.exit(2);
}
