// A real OpenID provider on loopback for relaygate's sign-in tests: npm's oidc-provider
// (the certified Node implementation) with its development login pages, which accept any
// login name. Usage: node idp.mjs PORT REDIRECT_BASE. Prints "ready" once it listens.
// Accounts: "alice" (groups team-alice, relaygate-admins) and "bob" (team-bob); a test
// changes someone's groups between sign-ins with PUT /test/groups/NAME and a JSON list
// (the provider's directory changed). Clients: "relaygate" (ID tokens live an hour), "relaygate-short"
// (ID tokens live one second, and its token answers leave 2.5 s later) and "relaygate-tampered" (its token answers carry an ID
// token whose payload was changed after signing).
import Provider from "oidc-provider";

const [port, redirectBase] = process.argv.slice(2);
const issuer = `http://127.0.0.1:${port}`;
const GROUPS = { alice: ["team-alice", "relaygate-admins"], bob: ["team-bob"] };

function account(name) {
  return {
    accountId: name,
    async claims() {
      return {
        sub: name,
        email: `${name}@example.org`,
        email_verified: true,
        name,
        groups: GROUPS[name] || [],
      };
    },
  };
}

const client = (id) => ({
  client_id: id,
  client_secret: "test-secret",
  redirect_uris: [`${redirectBase}/ui/auth/oidc/${id.replace("relaygate", "corp")}/callback`],
  post_logout_redirect_uris: [`${redirectBase}/ui/login`],
  token_endpoint_auth_method: "client_secret_post",
});

const provider = new Provider(issuer, {
  clients: [client("relaygate"), client("relaygate-short"), client("relaygate-tampered")],
  findAccount: (ctx, id) => account(id),
  claims: { openid: ["sub"], email: ["email", "email_verified"], profile: ["name"], groups: ["groups"] },
  scopes: ["openid", "email", "profile", "groups", "offline_access"],
  pkce: { required: () => true },
  features: { devInteractions: { enabled: true }, rpInitiatedLogout: { enabled: true } },
  ttl: { IdToken: (ctx, token, client) => (client && client.clientId === "relaygate-short" ? 1 : 3600) },
  conformIdTokenClaims: false,
  loadExistingGrant: async (ctx) => {
    // Consent given once for every scope and claim asked: the tests sign in, not consent.
    const grant = new provider.Grant({ clientId: ctx.oidc.client.clientId, accountId: ctx.oidc.session.accountId });
    grant.addOIDCScope(ctx.oidc.params.scope);
    await grant.save();
    return grant;
  },
});

provider.use(async (ctx, next) => {
  if (ctx.method === "PUT" && ctx.path.startsWith("/test/groups/")) {
    let body = "";
    for await (const chunk of ctx.req) body += chunk;
    GROUPS[ctx.path.slice("/test/groups/".length)] = JSON.parse(body);
    ctx.status = 204;
    return;
  }
  await next();
  if (ctx.path === "/token" && ctx.oidc && ctx.oidc.client && ctx.oidc.client.clientId === "relaygate-short") {
    await new Promise((resolve) => setTimeout(resolve, 2500));
  }
  if (ctx.path === "/token" && ctx.body && ctx.body.id_token && ctx.oidc && ctx.oidc.client &&
      ctx.oidc.client.clientId === "relaygate-tampered") {
    const [head, payload, signature] = ctx.body.id_token.split(".");
    const claims = JSON.parse(Buffer.from(payload, "base64url").toString());
    claims.sub = "alice"; // an identity swap that keeps the signature of the real token
    claims.groups = ["relaygate-admins"];
    ctx.body = { ...ctx.body, id_token: [head, Buffer.from(JSON.stringify(claims)).toString("base64url"), signature].join(".") };
  }
});

provider.listen(Number(port), "127.0.0.1", () => console.log("ready"));
