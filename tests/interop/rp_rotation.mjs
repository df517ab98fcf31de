// Key rotation seen by a relying party built on the npm `openid-client` library.
// Usage: node rp_rotation.mjs CONFIG_JSON — signs in once and prints one JSON line; then waits
// for a line on stdin (the test rotated the provider's key meanwhile), signs in again with the
// same client configuration (its cached JWKS lacks the new key) and prints a second JSON line.
// Shares the scripted browser of rp_flow.mjs (copied: that file runs its flow when imported).
// The "browser" part (cookies, the HTML login form) is a few lines of fetch: no JavaScript
// runs on the provider's pages, exactly like a person's browser with scripts disabled.
import * as client from 'openid-client';

const cfg = JSON.parse(process.argv[2]);
const out = { steps: [] };
const jar = new Map();

function storeCookies(res) {
  for (const c of res.headers.getSetCookie()) {
    const [pair] = c.split(';');
    const i = pair.indexOf('=');
    const name = pair.slice(0, i), value = pair.slice(i + 1);
    if (/max-age=0/i.test(c) || /expires=Thu, 01 Jan 1970/i.test(c) || value === '""') jar.delete(name);
    else jar.set(name, value);
  }
}
const cookieHeader = () => [...jar].map(([k, v]) => `${k}=${v}`).join('; ');

async function browse(url, init = {}) {
  // follow redirects on the provider; stop when leaving it (the application's redirect URI)
  let res = await fetch(url, { ...init, redirect: 'manual', headers: { ...(init.headers || {}), cookie: cookieHeader() } });
  storeCookies(res);
  for (let i = 0; i < 10 && res.status >= 300 && res.status < 400; i++) {
    const next = new URL(res.headers.get('location'), url);
    if (next.origin !== new URL(cfg.issuer).origin) return { callback: next };
    url = next.href;
    res = await fetch(url, { redirect: 'manual', headers: { cookie: cookieHeader() } });
    storeCookies(res);
  }
  return { page: await res.text(), status: res.status };
}

function hidden(page) {
  const fields = {};
  for (const m of page.matchAll(/<input[^>]*type="hidden"[^>]*name="([^"]+)"[^>]*value="([^"]*)"/g)) {
    fields[m[1]] = m[2].replace(/&amp;/g, '&').replace(/&#34;|&quot;/g, '"').replace(/&#39;/g, "'").replace(/&lt;/g, '<').replace(/&gt;/g, '>');
  }
  return fields;
}

async function signIn(config, redirectUri, scope, loginExpected) {
  const verifier = client.randomPKCECodeVerifier();
  const challenge = await client.calculatePKCECodeChallenge(verifier);
  const state = client.randomState(), nonce = client.randomNonce();
  const url = client.buildAuthorizationUrl(config, {
    redirect_uri: redirectUri, scope, code_challenge: challenge, code_challenge_method: 'S256', state, nonce,
  });
  let r = await browse(url.href);
  let askedPassword = false;
  if (r.page !== undefined) {
    askedPassword = r.page.includes('name="password"');
    if (!askedPassword) throw new Error('unexpected page: ' + r.page.slice(0, 400));
    const form = new URLSearchParams({ ...hidden(r.page), username: cfg.username, password: cfg.password });
    r = await browse(new URL('/login', cfg.issuer).href, {
      method: 'POST', body: form, headers: { 'content-type': 'application/x-www-form-urlencoded' },
    });
  }
  if (!r.callback) throw new Error('no callback: ' + (r.page || '').slice(0, 400));
  const tokens = await client.authorizationCodeGrant(config, r.callback, {
    pkceCodeVerifier: verifier, expectedState: state, expectedNonce: nonce, idTokenExpected: true,
  });
  return { tokens, askedPassword };
}

async function configFor(c) {
  const auth = c.secret ? client.ClientSecretBasic(c.secret) : client.None();
  return client.discovery(new URL(cfg.issuer), c.client_id, c.secret ? undefined : { token_endpoint_auth_method: 'none' },
    auth, { execute: [client.allowInsecureRequests] });
}


const kidOf = (jwt) => JSON.parse(Buffer.from(jwt.split('.')[0], 'base64url').toString()).kid;

async function round(config) {
  const r = await signIn(config, cfg.clients[0].redirect_uri, cfg.scope);
  const claims = r.tokens.claims();  // openid-client validated the ID token (JWKS signature …)
  return { ok: true, kid: kidOf(r.tokens.id_token), sub: claims.sub, asked_password: r.askedPassword,
           userinfo_sub: (await client.fetchUserInfo(config, r.tokens.access_token, claims.sub)).sub };
}

async function guarded(config) {
  try { return await round(config); }
  catch (e) { return { ok: false, error: String(e && e.stack || e), code: e && e.code }; }
}

const config = await configFor(cfg.clients[0]);
process.stdout.write(JSON.stringify(await guarded(config)) + '\n');
await new Promise((resolve) => process.stdin.once('data', resolve));
process.stdout.write(JSON.stringify(await guarded(config)) + '\n');
process.exit(0);
