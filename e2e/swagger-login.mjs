// The newcomer's path through Swagger UI, in a real headless Chromium:
// open /docs, click Authorize, sign in as the admin in the OAuth popup
// (authorization code + PKCE with the public `swagger-ui` client), then
// "Try it out" on POST /v1/products and see the product in GET /v1/products.
//
// Environment: JETSHOP_URL (the gateway), ADMIN_EMAIL, ADMIN_PASSWORD,
// CHROMIUM (default /usr/bin/chromium), SCREENSHOT_DIR (optional).
import { chromium } from 'playwright-core';
import assert from 'node:assert/strict';

const base = process.env.JETSHOP_URL ?? 'http://127.0.0.1:8080';
const email = process.env.ADMIN_EMAIL ?? 'admin@jetshop.local';
const password = process.env.ADMIN_PASSWORD;
const shots = process.env.SCREENSHOT_DIR;
assert.ok(password, 'ADMIN_PASSWORD is required');

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

async function shot(name) {
  if (shots) await page.screenshot({ path: `${shots}/${name}.png`, fullPage: true });
}

try {
  await page.goto(`${base}/docs`);
  await page.locator('.swagger-ui .info .title').waitFor({ timeout: 30_000 });
  await shot('1-docs');

  // Authorize: the oauth2 scheme's client id is pre-filled with swagger-ui.
  await page.locator('button.authorize').first().click();
  const dialog = page.locator('.modal-ux');
  await dialog.waitFor();
  // The authorization-code flow's section (the same scheme also lists client credentials).
  const flow = dialog.locator('.auth-container', { has: page.locator('#client_id_authorizationCode') });
  assert.equal(await flow.locator('#client_id_authorizationCode').inputValue(), 'swagger-ui', 'the client id is pre-filled');
  await flow.locator('label[for="catalog:write-authorizationCode-checkbox-oauth2"]').click();
  await shot('2-authorize');

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

  // The authorization-code section now reads "Authorized" (its inputs are gone).
  await dialog.locator('h6', { hasText: 'Authorized' }).first().waitFor({ timeout: 30_000 });
  await shot('3-authorized');
  await dialog.locator('button.close-modal').first().click();

  // Try it out: POST /v1/products as the admin (scope catalog:write).
  const sku = `E2E-${Date.now()}`;
  const op = page.locator('#operations-Products-createProduct');
  await op.locator('.opblock-summary').click();
  await op.getByRole('button', { name: 'Try it out' }).click();
  const body = {
    sku, name: 'Made in a browser', description: 'Created through Swagger UI',
    price: { amount_minor: 4200, currency: 'EUR' }, stock: 3,
  };
  await op.locator('textarea.body-param__text').fill(JSON.stringify(body, null, 2));
  await op.getByRole('button', { name: 'Execute' }).click();
  const status = op.locator('.responses-table.live-responses-table .response .response-col_status').first();
  await status.waitFor({ timeout: 30_000 });
  await shot('4-created');
  assert.equal((await status.innerText()).trim(), '202', 'the write is accepted');

  // The command reaches the catalog over JetStream; the product shows up in the list.
  let found = false;
  for (let i = 0; i < 50 && !found; i++) {
    const r = await fetch(`${base}/v1/products?q=${encodeURIComponent(sku)}`);
    const page_ = await r.json();
    found = page_.items.some((p) => p.sku === sku);
    if (!found) await new Promise((res) => setTimeout(res, 200));
  }
  assert.ok(found, `${sku} is listed by GET /v1/products`);
  assert.deepEqual(problems, [], 'no script errors or failed loads on the page');
  console.log('e2e: Swagger UI login with PKCE and a protected call: 1 passed, 0 failed');
} catch (err) {
  await shot('failure').catch(() => {});
  console.error(err);
  console.log('e2e: 0 passed, 1 failed');
  process.exitCode = 1;
} finally {
  await browser.close();
}
