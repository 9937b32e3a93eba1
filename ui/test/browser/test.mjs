// Browser tests of Stowage's web UI: headless Debian chromium driven by
// playwright-core, against a real server that scripts/ui-test.sh started
// (access control on, images pushed with crane). Env: STOWAGE_URL,
// ADMIN_PASSWORD, TOKEN_NAME, TOKEN_PASSWORD, STOWAGE_BIN, SHOTS (screenshot
// directory), CHROMIUM (default /usr/bin/chromium), DELETE_REPO.
//
// Checks: every page loads without console errors; the numbers on the pages
// equal the API's; a delete confirmed in the UI frees exactly the bytes its
// dry run predicted, after `stowage gc --min-age 0s`; a scoped token sees
// only its repositories and gets 403 on the others, pages and actions.
import { chromium } from "playwright-core";
import { execFileSync } from "node:child_process";
import { mkdtempSync, mkdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const URL0 = process.env.STOWAGE_URL;
const ADMIN_PW = process.env.ADMIN_PASSWORD;
const TOKEN = process.env.TOKEN_NAME;
const TOKEN_PW = process.env.TOKEN_PASSWORD;
const SHOTS = process.env.SHOTS;
const BIN = process.env.STOWAGE_BIN;
for (const [k, v] of Object.entries({ STOWAGE_URL: URL0, ADMIN_PASSWORD: ADMIN_PW, TOKEN_NAME: TOKEN, TOKEN_PASSWORD: TOKEN_PW, SHOTS, STOWAGE_BIN: BIN })) {
  if (!v) { console.error(`missing env ${k}`); process.exit(2); }
}
mkdirSync(SHOTS, { recursive: true });

let failures = 0;
const pass = (m) => console.log(`PASS ${m}`);
const fail = (m) => { failures++; console.log(`FAIL ${m}`); };
const eq = (got, want, m) => (got === want ? pass(`${m} (${got})`) : fail(`${m}: got ${got}, want ${want}`));

async function api(path, { user = "admin", pw = ADMIN_PW, method = "GET" } = {}) {
  const r = await fetch(URL0 + path, { method, headers: { Authorization: "Basic " + Buffer.from(`${user}:${pw}`).toString("base64") } });
  const body = await r.text();
  if (r.status >= 300) throw new Error(`${method} ${path}: ${r.status} ${body}`);
  return JSON.parse(body);
}

const userData = mkdtempSync(join(tmpdir(), "stowage-ui-chromium-"));
// A fresh profile (--user-data-dir, which playwright takes as an argument).
const context = await chromium.launchPersistentContext(userData, {
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync"],
  viewport: { width: 1280, height: 900 },
});

// A page that records console errors and failed page scripts; expected
// lists the statuses of navigations the test expects to fail (403), whose
// "Failed to load resource" console line is then not an error.
async function newSession() {
  await context.clearCookies(); // a new person at the same browser
  const page = await context.newPage();
  page.errors = [];
  page.on("console", (msg) => { if (msg.type() === "error") page.errors.push(msg.text()); });
  page.on("pageerror", (err) => page.errors.push(String(err)));
  page.on("dialog", (d) => d.accept());
  return { page };
}

async function visit(page, path, { status = 200, shot } = {}) {
  page.errors = [];
  const resp = await page.goto(URL0 + path, { waitUntil: "load" });
  const st = resp.status();
  if (st !== status) fail(`GET ${path}: status ${st}, want ${status}`);
  const errs = page.errors.filter((e) => !(status >= 400 && e.includes(`status of ${status}`)));
  if (errs.length) fail(`GET ${path}: console errors: ${errs.join(" | ")}`);
  else if (st === status) pass(`GET ${path}: ${st}, no console errors`);
  if (shot) await page.screenshot({ path: join(SHOTS, shot + ".png"), fullPage: true });
  return st;
}

async function login(page, name, pw) {
  await page.goto(URL0 + "/ui/login");
  await page.fill("#name", name);
  await page.fill("#password", pw);
  await Promise.all([page.waitForNavigation(), page.click("#login")]);
}

const bytesOf = async (page, sel) => Number(await page.getAttribute(sel, "data-bytes"));

try {
  // ---------------------------------------------------------------- admin
  const { page } = await newSession();
  await visit(page, "/ui/login", { shot: "login" });
  await login(page, "admin", ADMIN_PW);
  eq(new URL(page.url()).pathname, "/ui/", "admin lands on the overview");

  const u = await api("/api/v1/usage");
  await visit(page, "/ui/", { shot: "overview" });
  eq(await bytesOf(page, "#physical .bytes"), u.physicalBytes, "overview: stored bytes = API physicalBytes");
  eq(await bytesOf(page, "#logical .bytes"), u.logicalBytes, "overview: logical bytes = API logicalBytes");
  eq(await page.textContent("#dedup"), u.dedupRatio.toFixed(2) + "×", "overview: dedup ratio = API dedupRatio");
  eq(Number((await page.textContent("#repo-count")).replace(/,/g, "")), u.repositories, "overview: repositories = API");
  for (const r of u.repositoryUsage) {
    const row = `#top-repos tr[data-repo="${r.name}"]`;
    if (await page.$(row)) {
      eq(await bytesOf(page, `${row} td[data-field=unique] .bytes`), r.uniqueBytes, `overview: ${r.name} unique bytes = API`);
      eq(await bytesOf(page, `${row} td[data-field=shared] .bytes`), r.sharedBytes, `overview: ${r.name} shared bytes = API`);
    }
  }
  eq(await page.locator("svg.chart").count() >= 2, true, "overview draws its SVG charts (space, growth)");
  eq(await page.locator("svg.chart polyline.physical").count(), 1, "growth chart has the stored-bytes line (usage history)");

  for (const sort of ["name", "size", "updated"]) {
    await visit(page, `/ui/repositories?sort=${sort}`, { shot: sort === "size" ? "repositories" : undefined });
    const names = await page.$$eval("#repos tr[data-repo]", (rows) => rows.map((r) => r.dataset.repo));
    eq(names.length, u.repositories, `repositories sorted by ${sort}: every repository listed`);
    if (sort === "size") {
      const want = [...u.repositoryUsage].sort((a, b) => b.referencedBytes - a.referencedBytes || (a.name < b.name ? -1 : 1)).map((r) => r.name);
      eq(names.join(","), want.join(","), "repositories sorted by size: largest first, as the API's usage says");
      for (const r of u.repositoryUsage) {
        eq(await bytesOf(page, `#repos tr[data-repo="${r.name}"] td[data-field=referenced] .bytes`), r.referencedBytes, `repositories: ${r.name} size = API referencedBytes`);
      }
    }
  }
  await page.fill("#q", "team-a/");
  await Promise.all([page.waitForNavigation(), page.click("#search button[type=submit]")]);
  const found = await page.$$eval("#repos tr[data-repo]", (rows) => rows.map((r) => r.dataset.repo));
  eq(found.every((n) => n.startsWith("team-a/")) && found.length > 0, true, `search "team-a/" lists only team-a/* (${found.join(",")})`);

  const repo = process.env.DELETE_REPO || "team-a/app";
  const ru = await api(`/api/v1/usage/${repo}`);
  await visit(page, `/ui/repository?name=${encodeURIComponent(repo)}`, { shot: "repository" });
  eq(await bytesOf(page, "#referenced .bytes"), ru.referencedBytes, `${repo}: referenced = API`);
  eq(await bytesOf(page, "#unique .bytes"), ru.uniqueBytes, `${repo}: unique = API`);
  eq(await bytesOf(page, "#shared .bytes"), ru.sharedBytes, `${repo}: shared = API`);
  for (const m of ru.manifestUsage) {
    const row = `#manifests tr[data-digest="${m.digest}"]`;
    eq(await bytesOf(page, `${row} td[data-field=size] .bytes`), m.size, `${repo}@${m.digest.slice(7, 19)}: size = API`);
    eq(await bytesOf(page, `${row} td[data-field=unique] .bytes`), m.uniqueBytes, `${repo}@${m.digest.slice(7, 19)}: unique = API`);
  }
  const target = ru.manifestUsage.find((m) => m.tags.includes("1")) || ru.manifestUsage[0];
  await visit(page, `/ui/manifest?name=${encodeURIComponent(repo)}&digest=${encodeURIComponent(target.digest)}`, { shot: "manifest" });
  const sharedWith = await page.$$eval("#layers td a", (as) => as.map((a) => a.textContent));
  eq(sharedWith.some((t) => t.startsWith("team-b/")), true, "manifest page: the base layer is also used by team-b (bounded list)");

  await visit(page, "/ui/policies", { shot: "policies" });
  await Promise.all([page.waitForNavigation(), page.click("#retention-preview")]);
  eq(await page.isVisible("#retention-dryrun"), true, "retention preview shows its dry run");
  eq(page.errors.length, 0, "retention preview: no console errors");

  // ---- delete after the confirmation frees exactly the predicted bytes
  const before = await api("/api/v1/usage");
  const dry = await api(`/api/v1/images/${repo}@${target.digest}?dry_run=true`, { method: "DELETE" });
  await visit(page, `/ui/repository?name=${encodeURIComponent(repo)}`);
  page.errors = [];
  await Promise.all([page.waitForNavigation(), page.click(`a[data-delete="${target.digest}"]`)]);
  await page.screenshot({ path: join(SHOTS, "delete-confirm.png"), fullPage: true });
  const predicted = await bytesOf(page, "#frees");
  eq(predicted, dry.bytesFreed, "the confirmation page's \"frees N bytes\" = the API's dry run");
  eq(predicted > 0, true, "the delete frees something");
  await Promise.all([page.waitForNavigation(), page.click("#confirm")]);
  eq((await page.textContent("#flash")).includes(predicted.toLocaleString("en-US")), true, "after the delete, the page says what it frees");
  eq(page.errors.length, 0, "delete: no console errors");
  const gcOut = execFileSync(BIN, ["gc", "--min-age", "0s", "--output", "json", "--registry", URL0],
    { env: { ...process.env, STOWAGE_USERNAME: "admin", STOWAGE_PASSWORD: ADMIN_PW }, encoding: "utf8" });
  const report = JSON.parse(gcOut);
  eq(report.bytesFreed, predicted, "stowage gc --min-age 0s freed exactly the predicted bytes");
  const after = await api("/api/v1/usage");
  eq(before.physicalBytes - after.physicalBytes, predicted, "stored bytes went down by exactly the predicted bytes");
  await visit(page, "/ui/", { shot: "overview-after-delete" });
  eq(await page.isVisible("#last-gc"), true, "overview shows the last garbage collection");
  await page.close();

  // ---------------------------------------------------------------- token
  const { page: tp } = await newSession();
  await login(tp, TOKEN, TOKEN_PW);
  eq(new URL(tp.url()).pathname, "/ui/repositories", "the token lands on its repositories");
  await visit(tp, "/ui/repositories", { shot: "token-repositories" });
  const mine = await tp.$$eval("#repos tr[data-repo]", (rows) => rows.map((r) => r.dataset.repo));
  eq(mine.length > 0 && mine.every((n) => n.startsWith("team-a/")), true, `the token sees only team-a/* (${mine.join(",")})`);
  const others = u.repositoryUsage.map((r) => r.name).filter((n) => !n.startsWith("team-a/"));
  for (const n of others) {
    await visit(tp, `/ui/repository?name=${encodeURIComponent(n)}`, { status: 403, shot: n === others[0] ? "token-403" : undefined });
  }
  await visit(tp, "/ui/", { status: 403 });
  await visit(tp, "/ui/policies", { status: 403 });
  await visit(tp, `/ui/delete?what=image&target=${encodeURIComponent(repo + "@" + ru.manifestUsage[0].digest)}`, { status: 403 });
  await visit(tp, `/ui/repository?name=${encodeURIComponent(mine[0])}`);
  eq(await tp.locator("a[data-delete]").count(), 0, "a read-only token is offered no delete buttons");
  // Actions: the session's own CSRF token, so only authorization refuses.
  const csrf = await tp.getAttribute("input[name=csrf]", "value");
  for (const [path, form] of [
    ["/ui/delete", { what: "repository", target: others[0] }],
    ["/ui/delete", { what: "repository", target: mine[0] }],
    ["/ui/locks", { target: others[0], write: "on" }],
    ["/ui/policies/retention", { action: "run" }],
  ]) {
    const r = await tp.request.post(URL0 + path, { form: { ...form, csrf }, maxRedirects: 0 });
    eq(r.status(), 403, `POST ${path} ${JSON.stringify(form)} as the token`);
  }
  const still = await api("/api/v1/usage");
  eq(still.repositories, after.repositories, "the refused actions deleted nothing");
  await tp.close();
} catch (e) {
  fail(`exception: ${e.stack || e}`);
} finally {
  await context.close();
  rmSync(userData, { recursive: true, force: true });
}
console.log(`screenshots: ${SHOTS}`);
if (failures) { console.log(`${failures} check(s) failed`); process.exit(1); }
console.log("all browser checks passed");
