// A third-party OpenID provider on loopback, built on the npm `oidc-provider` library.
// Two uses: (1) the "provincial identity platform" ztgw federates to (tests), (2) the peer
// in bench/token_bench.py (client credentials, ES256 JWT access tokens).
// Usage: node op_server.mjs CONFIG_JSON   — prints "ready <issuer>" on stdout when listening.
//   CONFIG_JSON: {"port": n, "clients": [...oidc-provider client metadata...],
//                 "accounts": {"<sub>": {claims}}, "bench": bool}
import Provider from 'oidc-provider';
import * as jose from 'jose';

const cfg = JSON.parse(process.argv[2]);
const issuer = `http://127.0.0.1:${cfg.port}`;
const { privateKey } = await jose.generateKeyPair('ES256', { extractable: true });
const jwk = { ...(await jose.exportJWK(privateKey)), alg: 'ES256', use: 'sig', kid: 'op-es256' };
const { privateKey: rsa } = await jose.generateKeyPair('RS256', { extractable: true, modulusLength: 2048 });
const rsaJwk = { ...(await jose.exportJWK(rsa)), alg: 'RS256', use: 'sig', kid: 'op-rs256' };
const accounts = cfg.accounts || {};
const AUDIENCE = 'urn:ztgw:data-api';

const provider = new Provider(issuer, {
  clients: cfg.clients,
  jwks: { keys: [jwk, rsaJwk] },
  claims: {
    openid: ['sub'],
    profile: ['name', 'preferred_username'],
    email: ['email', 'email_verified'],
    gov: ['department', 'id_level'],
  },
  scopes: ['openid', 'profile', 'email', 'gov', 'data.read', 'offline_access'],
  features: {
    devInteractions: { enabled: !cfg.bench },
    clientCredentials: { enabled: true },
    resourceIndicators: {
      enabled: true,
      // bench: client-credentials JWTs for the data API; federation: opaque tokens for userinfo
      defaultResource: () => (cfg.bench ? AUDIENCE : undefined),
      useGrantedResource: () => true,
      getResourceServerInfo: () => ({
        scope: 'data.read',
        audience: AUDIENCE,
        accessTokenTTL: 600,
        accessTokenFormat: 'jwt',
        jwt: { sign: { alg: 'ES256' } },
      }),
    },
  },
  pkce: { required: () => true },
  findAccount: async (ctx, sub) => {
    const claims = accounts[sub] || { preferred_username: sub };
    return { accountId: sub, claims: async () => ({ sub, ...claims }) };
  },
  loadExistingGrant: async (ctx) => {
    // first-party test provider: grant what the client asked for, no consent screen
    const grant = new ctx.oidc.provider.Grant({ clientId: ctx.oidc.client.clientId,
                                                accountId: ctx.oidc.session.accountId });
    grant.addOIDCScope('openid profile email gov');
    grant.addOIDCClaims(['department', 'id_level', 'email', 'email_verified', 'name', 'preferred_username']);
    await grant.save();
    return grant;
  },
  ttl: { AccessToken: 600, ClientCredentials: 600, IdToken: 600, Grant: 600, Session: 600,
         Interaction: 600, AuthorizationCode: 60 },
});
provider.proxy = false;
provider.on('server_error', (ctx, err) => { process.stderr.write(`server_error ${err}\n`); });
const server = provider.listen(cfg.port, '127.0.0.1', () => {
  process.stdout.write(`ready ${issuer}\n`);
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
