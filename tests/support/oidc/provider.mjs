// An OpenID Connect provider for the sign-in tests: the npm `oidc-provider` package (pinned in
// scripts/ensure_mcp_servers.sh, installed in .make/node), with one client, the accounts it is given
// and a plain sign-in form of our own. tests/support/oidc/__init__.py starts it:
//
//   node provider.mjs --port 8123 --client-id sidekick --client-secret s3cret \
//        --redirect-uri http://127.0.0.1:8501/oauth2callback \
//        --accounts '{"alice": {"password": "…", "name": "Alice Example", "email": "alice@example.test"}}'
//
// It serves plain http on 127.0.0.1 (issuer http://127.0.0.1:PORT). oidc-provider needs no development
// mode for that: it marks its cookies `secure` only when the request came over https.
//
// Interactions are ours, not the package's devInteractions (those accept any login with any password
// and answer 501 to `prompt=select_account`, which Streamlit's st.login sends by default). Our form
// checks the password, and serves `select_account` as the same form, like a provider's account chooser.
// The one client is first-party, so consent is granted without asking (loadExistingGrant).
// The process prints `listening <issuer>` on stdout once it accepts connections.

import { randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';

const here = dirname(fileURLToPath(import.meta.url));
// oidc-provider is ESM only, and NODE_PATH does not apply to `import`: resolve it from .make/node.
const nodePrefix = process.env.SIDEKICK_NODE_PREFIX || join(here, '..', '..', '..', '.make', 'node');
const requireFromPrefix = createRequire(join(nodePrefix, 'package.json'));
const { default: Provider, interactionPolicy } = await import(
  pathToFileURL(requireFromPrefix.resolve('oidc-provider')).href
);

const { values: opts } = parseArgs({
  options: {
    port: { type: 'string' },
    'client-id': { type: 'string' },
    'client-secret': { type: 'string' },
    'redirect-uri': { type: 'string', multiple: true },
    accounts: { type: 'string' },
  },
  strict: true,
});
for (const required of ['port', 'client-id', 'client-secret', 'redirect-uri', 'accounts']) {
  if (!opts[required]) {
    console.error(`provider.mjs: --${required} is required`);
    process.exit(2);
  }
}
const port = Number(opts.port);
const issuer = `http://127.0.0.1:${port}`;
// { id: { password, name, email } }: the ID token carries sub (the id), name, email.
const accounts = JSON.parse(opts.accounts);

const escape = (text) => String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

function page(title, body) {
  return `<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>${escape(title)}</title></head>`
    + `<body><h1>${escape(title)}</h1>${body}</body></html>`;
}

function signInForm(uid, { login = '', error = '' } = {}) {
  return page('Sign in to the test provider', `
    ${error ? `<p role="alert">${escape(error)}</p>` : ''}
    <form method="post" action="/interaction/${escape(uid)}" autocomplete="off">
      <label>Account <input name="login" value="${escape(login)}" required autofocus></label>
      <label>Password <input name="password" type="password" required></label>
      <button type="submit">Sign in</button>
    </form>`);
}

const policy = interactionPolicy.base();
// Requestable, with no checks of its own: it runs only when the client asks, and our sign-in form
// resolves it together with `login`.
policy.add(new interactionPolicy.Prompt({ name: 'select_account', requestable: true }), 0);

const provider = new Provider(issuer, {
  clients: [{
    client_id: opts['client-id'],
    client_secret: opts['client-secret'],
    redirect_uris: opts['redirect-uri'],
    // Streamlit's st.logout sends its own callback as post_logout_redirect_uri.
    post_logout_redirect_uris: opts['redirect-uri'],
    grant_types: ['authorization_code'],
    response_types: ['code'],
  }],
  cookies: { keys: [randomBytes(32).toString('hex')] },
  claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['name'] },
  // Streamlit reads who signed in from the ID token alone (it never calls userinfo): put the scopes'
  // claims there, not only at the userinfo endpoint.
  conformIdTokenClaims: false,
  async findAccount(ctx, id) {
    const account = accounts[id];
    if (!account) return undefined;
    return {
      accountId: id,
      async claims() {
        return { sub: id, name: account.name, email: account.email, email_verified: true };
      },
    };
  },
  async loadExistingGrant(ctx) {
    const grantId = ctx.oidc.result?.consent?.grantId || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
    if (grantId) return ctx.oidc.provider.Grant.find(grantId);
    const grant = new ctx.oidc.provider.Grant({ clientId: ctx.oidc.client.clientId, accountId: ctx.oidc.session.accountId });
    grant.addOIDCScope('openid email profile');
    await grant.save();
    return grant;
  },
  interactions: { policy, url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  features: {
    devInteractions: { enabled: false },
    rpInitiatedLogout: {
      enabled: true,
      // The package's pages load a web font from the internet; these are plain.
      async logoutSource(ctx, form) {
        ctx.body = page('Sign out of the test provider?', `${form}
          <button type="submit" form="op.logoutForm" name="logout" value="yes">Yes, sign me out</button>
          <button type="submit" form="op.logoutForm">No, stay signed in</button>`);
      },
      async postLogoutSuccessSource(ctx) {
        ctx.body = page('Signed out of the test provider', '<p>You are signed out.</p>');
      },
    },
  },
  async renderError(ctx, out) {
    ctx.type = 'html';
    ctx.body = page('Test provider error', `<pre>${escape(JSON.stringify(out, null, 2))}</pre>`);
  },
});
provider.on('server_error', (ctx, err) => console.error('server_error', err));

async function readForm(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

function send(res, status, html) {
  res.writeHead(status, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
  res.end(html);
}

async function interaction(req, res, uid) {
  const details = await provider.interactionDetails(req, res);
  if (details.uid !== uid) return send(res, 400, page('Test provider error', '<p>Wrong interaction.</p>'));
  const { name } = details.prompt;
  if (name !== 'login' && name !== 'select_account') {
    return send(res, 501, page('Test provider error', `<p>Unexpected prompt ${escape(name)}.</p>`));
  }
  if (req.method === 'GET') return send(res, 200, signInForm(uid));
  const form = await readForm(req);
  const login = form.get('login') || '';
  if (accounts[login]?.password !== form.get('password')) {
    return send(res, 401, signInForm(uid, { login, error: 'Wrong account or password.' }));
  }
  const result = { login: { accountId: login }, select_account: {} };
  return provider.interactionFinished(req, res, result, { mergeWithLastSubmission: false });
}

const callback = provider.callback();
const server = createServer((req, res) => {
  const match = /^\/interaction\/([^/?]+)\/?(\?.*)?$/.exec(req.url);
  if (!match || (req.method !== 'GET' && req.method !== 'POST')) return callback(req, res);
  interaction(req, res, match[1]).catch((err) => {
    console.error('interaction failed', err);
    if (!res.headersSent) send(res, 400, page('Test provider error', `<p>${escape(err.message)}</p>`));
    else res.end();
  });
});
server.listen(port, '127.0.0.1', () => console.log(`listening ${issuer}`));

for (const sig of ['SIGTERM', 'SIGINT']) {
  process.on(sig, () => {
    server.close(() => process.exit(0));
    server.closeAllConnections();
  });
}
