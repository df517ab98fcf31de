// A relying party built on the npm `openid-client` library, run against a real `ztgw serve`.
// Usage: node rp_flow.mjs CONFIG_JSON  — prints one JSON document with what it observed.
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

try {
  const a = await configFor(cfg.clients[0]);
  const b = await configFor(cfg.clients[1]);
  // application A: code + PKCE, the user types a password
  const first = await signIn(a, cfg.clients[0].redirect_uri, cfg.scope);
  const claims = first.tokens.claims();
  out.a = { asked_password: first.askedPassword, sub: claims.sub, acr: claims.acr, amr: claims.amr,
            sid: claims.sid, has_refresh: Boolean(first.tokens.refresh_token), alg: null };
  out.a.userinfo = await client.fetchUserInfo(a, first.tokens.access_token, claims.sub);
  // refresh rotation
  const refreshed = await client.refreshTokenGrant(a, first.tokens.refresh_token);
  out.a.rotated = refreshed.refresh_token !== first.tokens.refresh_token;
  try { await client.refreshTokenGrant(a, first.tokens.refresh_token); out.a.reuse_refused = false; }
  catch (e) { out.a.reuse_refused = e.error === 'invalid_grant'; }
  // after reuse the whole family is dead, including the rotated one
  try { await client.refreshTokenGrant(a, refreshed.refresh_token); out.a.family_dead = false; }
  catch (e) { out.a.family_dead = e.error === 'invalid_grant'; }

  // application B in the same browser: single sign-on, no second password
  const second = await signIn(b, cfg.clients[1].redirect_uri, cfg.scope);
  const bclaims = second.tokens.claims();
  out.b = { asked_password: second.askedPassword, sub: bclaims.sub, sid: bclaims.sid };
  const intro = await client.tokenIntrospection(b, second.tokens.access_token);
  out.b.introspection = { active: intro.active, client_id: intro.client_id, username: intro.username };
  await client.tokenRevocation(b, second.tokens.access_token);
  out.b.introspection_after_revoke = (await client.tokenIntrospection(b, second.tokens.access_token)).active;
  out.b.access_token_revoked = second.tokens.access_token;

  // a third sign-in at A for logout: then RP-initiated logout ends the SSO session
  const third = await signIn(a, cfg.clients[0].redirect_uri, cfg.scope);
  out.logout = { refresh_before: Boolean(third.tokens.refresh_token) };
  const end = client.buildEndSessionUrl(a, { id_token_hint: third.tokens.id_token,
    post_logout_redirect_uri: cfg.clients[0].post_logout_redirect_uri, state: 'bye' });
  const lo = await browse(end.href);
  out.logout.redirected_to = lo.callback ? lo.callback.href : null;
  try { await client.refreshTokenGrant(a, third.tokens.refresh_token); out.logout.refresh_after = 'ok'; }
  catch (e) { out.logout.refresh_after = e.error; }
  out.logout.access_token = third.tokens.access_token;
  // and the next sign-in asks for the password again
  const again = await signIn(b, cfg.clients[1].redirect_uri, cfg.scope);
  out.logout.asked_password_again = again.askedPassword;
  out.ok = true;
} catch (e) {
  out.ok = false;
  out.error = String(e && e.stack || e);
  if (e && e.cause) out.cause = JSON.stringify(e.cause).slice(0, 500);
}
process.stdout.write(JSON.stringify(out));
