// The newcomer's path through Swagger UI, in a real headless Chromium
// (issue 4's "Done when"):
//
//  1. open /docs, click Authorize, sign in as the admin in the OAuth popup
//     (authorization code + PKCE with the public `swagger-ui` client),
//     asking for catalog:write, orders:read and orders:write;
//  2. "Try it out" on POST /v1/products and see the product listed;
//  3. find a demo product (`--seed-demo`) with GET /v1/products;
//  4. place an order with `tok_visa` through POST /v1/orders, read the 202's
//     order id, Execute GET /v1/orders/{id} until it is `confirmed`, and find
//     its email, `<data-dir>/mail/order-confirmed-<order_id>.eml`;
//  5. place one with `tok_chargeDeclined`: it ends `cancelled`, its email is
//     `order-cancelled-<order_id>.eml`, and the product's stock is back;
//  6. `jetshop dlq ls` against the same NATS exits 0 and lists nothing
//     (a declined card is a business outcome, not a dead letter).
//
// Every wait is on a selector, a network response or a file, with a
// deadline; the only pause is between two polls of a state that changes on
// its own (the saga, the mail folder).
//
// Environment: JETSHOP_URL (the gateway), ADMIN_EMAIL, ADMIN_PASSWORD,
// DATA_DIR (`jetshop up --data-dir`), NATS_URL (the NATS it uses),
// JETSHOP_BIN (the jetshop binary), CHROMIUM (default /usr/bin/chromium),
// SCREENSHOT_DIR (optional).
import { chromium } from 'playwright-core';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';

const base = process.env.JETSHOP_URL ?? 'http://127.0.0.1:8080';
const email = process.env.ADMIN_EMAIL ?? 'admin@jetshop.local';
const password = process.env.ADMIN_PASSWORD;
const dataDir = process.env.DATA_DIR;
const natsUrl = process.env.NATS_URL;
const jetshop = process.env.JETSHOP_BIN;
const shots = process.env.SCREENSHOT_DIR;
for (const [name, value] of Object.entries({ ADMIN_PASSWORD: password, DATA_DIR: dataDir, NATS_URL: natsUrl, JETSHOP_BIN: jetshop })) {
  assert.ok(value, `${name} is required`);
}

/** How long a saga, an email or the demo catalog may take (a debug build on a busy machine). */
const SETTLE_MS = 90_000;
/** Pause between two polls of something that changes on its own (the gateway allows 120 requests a minute). */
const POLL_MS = 500;
/** The demo product ordered (40 in stock after seeding). */
const DEMO_SKU = 'MUG-BLUE';
const QUANTITY = 2;

const sleep = (ms) => new Promise((res) => setTimeout(res, ms));

/**
 * Call `probe` until it returns something other than undefined, or fail
 * after `ms` saying what was awaited (`what`: a string, or a function for
 * a description that changes while waiting).
 */
async function until(what, probe, ms = SETTLE_MS) {
  const deadline = Date.now() + ms;
  let last;
  for (;;) {
    last = await probe();
    if (last !== undefined) return last;
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${ms} ms waiting for ${typeof what === 'function' ? what() : what}`);
    }
    await sleep(POLL_MS);
  }
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
  args: [
    '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
  ],
});
const context = await browser.newContext();
const page = await context.newPage();
const problems = [];
page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
page.on('console', (m) => {
  // Failed loads are reported with their URL below.
  if (m.type() === 'error' && !m.text().startsWith('Failed to load resource')) problems.push(`console: ${m.text()}`);
});
page.on('response', (r) => {
  // The browser asks for a favicon on its own; everything else the page loads must exist.
  if (r.status() >= 400 && !new URL(r.url()).pathname.endsWith('/favicon.ico')) {
    problems.push(`${r.status()} ${r.request().method()} ${r.url()}`);
  }
});

/**
 * A screenshot of the viewport, or of one element: for an operation's block,
 * the request and the live response Swagger UI shows (its documented
 * responses make the whole block several screens long).
 */
async function shot(name, element) {
  if (!shots) return;
  const path = `${shots}/${name}.png`;
  if (!element) return page.screenshot({ path });
  const live = element.locator('.responses-inner > div', { has: page.locator('.live-responses-table') });
  await ((await live.count()) > 0 ? live.first() : element).screenshot({ path });
}

// Each step is one claim about the product; later steps build on earlier ones,
// so the first failure ends the run.
const passed = [];
async function step(name, fn) {
  const started = Date.now();
  await fn();
  passed.push(name);
  console.log(`  ok  ${name} (${((Date.now() - started) / 1000).toFixed(1)} s)`);
}

/** Swagger UI's block of one operation, opened, in "Try it out" mode. */
async function tryItOut(tag, operationId) {
  const op = page.locator(`#operations-${tag}-${operationId}`);
  if (!(await op.locator('.opblock-body').isVisible())) await op.locator('.opblock-summary').click();
  const tryOut = op.getByRole('button', { name: 'Try it out' });
  await op.locator('.opblock-body').waitFor();
  if (await tryOut.isVisible()) await tryOut.click();
  await op.getByRole('button', { name: 'Execute' }).waitFor();
  return op;
}

/**
 * Click Execute in `op` and wait for the request it sends (`method` on a
 * path matching `path`) to be answered, then for Swagger UI to show that
 * answer's status. Returns the network response.
 */
async function execute(op, method, path) {
  const [response] = await Promise.all([
    page.waitForResponse(
      (r) => r.request().method() === method && path.test(new URL(r.url()).pathname),
      { timeout: 30_000 },
    ),
    op.getByRole('button', { name: 'Execute' }).click(),
  ]);
  // The request URL Swagger UI shows is the one it just sent.
  await op.locator('.request-url pre', { hasText: new URL(response.url()).pathname }).waitFor();
  await op
    .locator('.live-responses-table .response-col_status', { hasText: String(response.status()) })
    .first()
    .waitFor();
  return response;
}

async function setBody(op, body) {
  await op.locator('textarea.body-param__text').fill(JSON.stringify(body, null, 2));
}

async function setParam(op, name, value) {
  await op.locator(`tr[data-param-name="${name}"] input`).fill(value);
}

async function getJson(path) {
  const r = await fetch(`${base}${path}`);
  assert.equal(r.status, 200, `GET ${path}`);
  return r.json();
}

async function stockOf(productId) {
  return (await getJson(`/v1/products/${productId}`)).stock;
}

/** Place an order through Swagger UI's POST /v1/orders; returns its id. */
async function placeOrder(productId, cardToken, shotName) {
  const started = Date.now();
  const op = await tryItOut('Orders', 'placeOrder');
  await setBody(op, { lines: [{ product_id: productId, quantity: QUANTITY }], card_token: cardToken });
  const response = await execute(op, 'POST', /^\/v1\/orders$/);
  await shot(shotName, op);
  assert.equal(response.status(), 202, `POST /v1/orders with ${cardToken} is accepted`);
  const accepted = await response.json();
  assert.equal(accepted.status, 'placed');
  assert.match(accepted.order_id, /^[0-9a-f-]{36}$/);
  assert.equal(new URL(response.headers().location, base).pathname, `/v1/orders/${accepted.order_id}`, 'Location names the order');
  // The same id is on the page, in the response body Swagger UI shows.
  await op.locator('.live-responses-table .response-col_description', { hasText: accepted.order_id }).first().waitFor();
  console.log(`      POST /v1/orders (${cardToken}): 202, order ${accepted.order_id} (${Date.now() - started} ms)`);
  return accepted.order_id;
}

/** Execute GET /v1/orders/{id} in Swagger UI until the order is confirmed or cancelled. */
async function waitForTerminal(orderId, shotName) {
  const op = await tryItOut('Orders', 'getOrder');
  await setParam(op, 'id', orderId);
  const started = Date.now();
  const seen = [];
  const order = await until(() => `order ${orderId} to be confirmed or cancelled (seen: ${seen.join(' -> ')})`, async () => {
    const response = await execute(op, 'GET', new RegExp(`^/v1/orders/${orderId}$`));
    assert.equal(response.status(), 200, `GET /v1/orders/${orderId}`);
    const o = await response.json();
    if (seen.at(-1) !== o.status) seen.push(o.status);
    return ['confirmed', 'cancelled'].includes(o.status) ? o : undefined;
  });
  // Swagger UI shows the final state too.
  await op.locator('.live-responses-table .response-col_description', { hasText: `"${order.status}"` }).first().waitFor();
  await shot(shotName, op);
  console.log(`      ${orderId}: ${seen.join(' -> ')} (${Date.now() - started} ms of polling)`);
  console.log(`      timeline: ${timeline(order).join(', ')}`);
  return order;
}

/** Wait for `<data-dir>/mail/<name>` and return its text. */
async function waitForMail(name) {
  const path = join(dataDir, 'mail', name);
  const started = Date.now();
  const eml = await until(path, () => readFile(path, 'utf8').catch((e) => {
    if (e.code === 'ENOENT') return undefined;
    throw e;
  }));
  console.log(`      mail/${name}: "${header(eml, 'Subject')}" (after ${Date.now() - started} ms of waiting)`);
  return eml;
}

/** The saga steps of an order's timeline, as "<step> <outcome>". */
function timeline(order) {
  return order.timeline.map((t) => `${t.step} ${t.outcome}`);
}

/** A header of an RFC 5322 message (looked for before the first blank line only). */
function header(eml, name) {
  const head = eml.split(/\r?\n\r?\n/, 1)[0];
  const m = head.match(new RegExp(`^${name}: (.*)$`, 'mi'));
  return m?.[1].trim();
}

try {
  await step('Swagger UI: Authorize with the swagger-ui client (authorization code + PKCE)', async () => {
    await page.goto(`${base}/docs`);
    await page.locator('.swagger-ui .info .title').waitFor({ timeout: 30_000 });
    await shot('01-docs');

    await page.locator('button.authorize').first().click();
    const dialog = page.locator('.modal-ux');
    await dialog.waitFor();
    // The authorization-code flow's section (the same scheme also lists client credentials).
    const flow = dialog.locator('.auth-container', { has: page.locator('#client_id_authorizationCode') });
    assert.equal(await flow.locator('#client_id_authorizationCode').inputValue(), 'swagger-ui', 'the client id is pre-filled');
    for (const scope of ['catalog:write', 'orders:read', 'orders:write']) {
      await flow.locator(`label[for="${scope}-authorizationCode-checkbox-oauth2"]`).click();
    }
    await shot('02-authorize', dialog);

    // The page trades the code for a token once the popup hands it over.
    const tokenResponse = page.waitForResponse(
      (r) => r.request().method() === 'POST' && new URL(r.url()).pathname === '/oauth/token',
      { timeout: 60_000 },
    );
    const [popup] = await Promise.all([
      context.waitForEvent('page'),
      flow.locator('button.authorize').click(),
    ]);
    await popup.waitForLoadState();
    assert.match(popup.url(), /\/oauth\/authorize\?/, 'the popup is our authorization endpoint');
    assert.match(popup.url(), /code_challenge_method=S256/, 'Swagger UI uses PKCE');
    await popup.locator('#email').fill(email);
    await popup.locator('#password').fill(password);
    await popup.locator('button[type=submit]').click();
    // The popup goes to oauth-receiver.html, hands the code to the opener and closes.
    await popup.waitForEvent('close', { timeout: 30_000 });

    const tr = await tokenResponse;
    assert.equal(tr.status(), 200, 'the code is exchanged for a token');
    const token = await tr.json();
    const granted = token.scope.split(' ');
    for (const scope of ['catalog:write', 'orders:read', 'orders:write']) {
      assert.ok(granted.includes(scope), `the admin is granted ${scope} (got "${token.scope}")`);
    }

    // The authorization-code section now reads "Authorized" (its inputs are gone).
    await dialog.locator('h6', { hasText: 'Authorized' }).first().waitFor({ timeout: 30_000 });
    await shot('03-authorized', dialog);
    await dialog.locator('button.close-modal').first().click();
    await dialog.waitFor({ state: 'detached' });
  });

  await step('Swagger UI: POST /v1/products (catalog:write) and see it in GET /v1/products', async () => {
    const sku = `E2E-${Date.now()}`;
    const op = await tryItOut('Products', 'createProduct');
    await setBody(op, {
      sku, name: 'Made in a browser', description: 'Created through Swagger UI',
      price: { amount_minor: 4200, currency: 'EUR' }, stock: 3,
    });
    const response = await execute(op, 'POST', /^\/v1\/products$/);
    await shot('04-product-created', op);
    assert.equal(response.status(), 202, 'the write is accepted');
    // The command reaches the catalog over JetStream; the product shows up in the list.
    await until(`${sku} in GET /v1/products`, async () => {
      const found = (await getJson(`/v1/products?q=${encodeURIComponent(sku)}`)).items.some((p) => p.sku === sku);
      return found || undefined;
    });
  });

  let product;
  await step(`Swagger UI: GET /v1/products finds the demo product ${DEMO_SKU}`, async () => {
    // --seed-demo sends the catalog in the background: wait until it is in.
    await until(`demo product ${DEMO_SKU} to be seeded`, async () => {
      const items = (await getJson(`/v1/products?sku=${DEMO_SKU}`)).items;
      return items.length > 0 || undefined;
    });
    const op = await tryItOut('Products', 'listProducts');
    await setParam(op, 'sku', DEMO_SKU);
    const response = await execute(op, 'GET', /^\/v1\/products$/);
    assert.equal(response.status(), 200);
    const items = (await response.json()).items;
    assert.equal(items.length, 1, `one product has sku ${DEMO_SKU}`);
    product = items[0];
    assert.ok(product.stock >= 2 * QUANTITY, `${DEMO_SKU} has stock for two orders (has ${product.stock})`);
    await shot('05-demo-product', op);
  });

  let confirmedId;
  await step('Swagger UI: an order paid with tok_visa becomes confirmed, its stock is taken and its email is written', async () => {
    const before = await stockOf(product.id);
    confirmedId = await placeOrder(product.id, 'tok_visa', '06-visa-placed');
    const order = await waitForTerminal(confirmedId, '07-visa-confirmed');
    assert.equal(order.status, 'confirmed', `the tok_visa order is confirmed (cancel reason: ${order.cancel_reason})`);
    assert.equal(order.lines.length, 1);
    assert.equal(order.lines[0].product_id, product.id);
    assert.equal(order.lines[0].quantity, QUANTITY);
    assert.deepEqual(order.lines[0].unit_price, product.price, 'the price is the catalog\'s');
    assert.equal(order.total.amount_minor, QUANTITY * product.price.amount_minor);
    assert.equal(await stockOf(product.id), before - QUANTITY, 'a confirmed order keeps its stock');
    const steps = timeline(order);
    for (const s of ['reserve_stock', 'authorize_payment', 'capture_payment', 'commit_reservation']) {
      assert.ok(steps.includes(`${s} succeeded`), `the timeline shows ${s} succeeded`);
    }

    const eml = await waitForMail(`order-confirmed-${confirmedId}.eml`);
    assert.equal(header(eml, 'To'), email, 'the email goes to the customer');
    assert.match(header(eml, 'Subject') ?? '', /is confirmed/);
    assert.ok(eml.includes(confirmedId), 'the email names the order');
  });

  let cancelledId;
  await step('Swagger UI: an order paid with tok_chargeDeclined ends cancelled with the stock back, and its email is written', async () => {
    const before = await stockOf(product.id);
    cancelledId = await placeOrder(product.id, 'tok_chargeDeclined', '08-declined-placed');
    const order = await waitForTerminal(cancelledId, '09-declined-cancelled');
    assert.equal(order.status, 'cancelled', 'the tok_chargeDeclined order is cancelled');
    assert.ok(order.cancel_reason, 'a cancelled order says why');
    console.log(`      cancel reason: ${order.cancel_reason}`);
    assert.equal(await stockOf(product.id), before, `the stock of ${DEMO_SKU} is back to ${before}`);
    const steps = timeline(order);
    assert.ok(steps.includes('authorize_payment failed'), 'the timeline shows the authorization failed');
    assert.ok(steps.includes('release_stock succeeded'), 'the timeline shows the stock released');
    assert.ok(!steps.some((s) => s.startsWith('capture_payment')), 'nothing was captured');

    const eml = await waitForMail(`order-cancelled-${cancelledId}.eml`);
    assert.equal(header(eml, 'To'), email);
    assert.match(header(eml, 'Subject') ?? '', /was cancelled/);
    assert.ok(eml.includes(cancelledId), 'the email names the order');

    // One email per order and outcome: nothing for the outcome it did not have.
    const mail = await readdir(join(dataDir, 'mail'));
    assert.ok(!mail.includes(`order-cancelled-${confirmedId}.eml`), 'no cancellation email for the confirmed order');
    assert.ok(!mail.includes(`order-confirmed-${cancelledId}.eml`), 'no confirmation email for the cancelled order');
  });

  await step('jetshop dlq ls against the same NATS exits 0 with no dead letters', async () => {
    const { stdout } = await promisify(execFile)(jetshop, ['dlq', 'ls'], {
      env: { ...process.env, NATS_URL: natsUrl },
      timeout: 60_000,
    }).catch((e) => {
      throw new Error(`jetshop dlq ls failed (exit ${e.code}): ${e.stderr || e.message}`);
    });
    console.log(stdout.trimEnd().replace(/^/gm, '      $ jetshop dlq ls: '));
    assert.match(stdout, /^no dead letters$/m, 'a declined card is not a dead letter');
  });

  assert.deepEqual(problems, [], 'no script errors or failed loads on the page');
  console.log(`e2e: ${passed.length} passed, 0 failed`);
} catch (err) {
  if (shots) await page.screenshot({ path: `${shots}/failure.png`, fullPage: true }).catch(() => {});
  console.error(err);
  console.log(`e2e: ${passed.length} passed, 1 failed`);
  process.exitCode = 1;
} finally {
  await browser.close();
}
