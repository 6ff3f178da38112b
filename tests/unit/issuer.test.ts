import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { chooseClientAuth } from '../../src/oidc/client-auth.ts'
import { discoveryUrl } from '../../src/oidc/discovery.ts'
import { endSessionExtras } from '../../src/oidc/end-session.ts'
import {
  acceptsSeveralIssuers,
  checkPublishedIssuer,
  expectedTokenIssuer,
  instantiates,
  type IssuerSettings,
} from '../../src/oidc/issuer.ts'

const ENTRA_TEMPLATE = 'https://login.microsoftonline.com/{tenantid}/v2.0'
const TENANT = '72f988bf-86f1-41af-91ab-2d7cd011db47'
const OTHER = '9188040d-6c67-4c5b-b112-36a304b66dad'

function settings(overrides: Partial<IssuerSettings> = {}): IssuerSettings {
  return {
    authority: 'https://kc.example.com/realms/demo',
    issuer: undefined,
    allowedIssuers: undefined,
    allowedTenants: undefined,
    ...overrides,
  }
}

describe('the published issuer', () => {
  test('the authority with or without a trailing slash accepts the issuer published without or with it', () => {
    for (const authority of ['https://kc.example.com/realms/demo', 'https://kc.example.com/realms/demo/']) {
      for (const published of ['https://kc.example.com/realms/demo', 'https://kc.example.com/realms/demo/']) {
        assert.deepEqual(
          checkPublishedIssuer(settings({ authority }), published),
          { ok: true, issuer: published },
          `${authority} → ${published}`,
        )
      }
    }
    assert.equal(
      checkPublishedIssuer(settings({ authority: 'https://tenant.auth0.com' }), 'https://tenant.auth0.com/').ok,
      true,
    )
  })

  test('another issuer is refused with what was expected and what was published', () => {
    for (const published of [
      'https://kc.example.com/realms/other',
      'https://kc.example.com/realms/demo//',
      'https://kc.example.com/realms/demo/x',
      'http://kc.example.com/realms/demo',
      'https://KC.example.com/realms/demo',
      'https://kc.example.com/realms',
      'https://kc.example.com/realms/demo?x',
      'https://evil.example.com/realms/demo',
    ]) {
      assert.deepEqual(
        checkPublishedIssuer(settings(), published),
        {
          ok: false,
          refusal: { cause: 'issuer_mismatch', expected: 'https://kc.example.com/realms/demo', received: published },
        },
        published,
      )
    }
  })

  test('oidc.issuer must be published exactly (or be a template it fills in); the authority no longer decides', () => {
    const pinned = settings({
      authority: 'http://keycloak:8080/realms/demo',
      issuer: 'https://kc.example.com/realms/demo',
    })
    assert.equal(checkPublishedIssuer(pinned, 'https://kc.example.com/realms/demo').ok, true)
    assert.equal(checkPublishedIssuer(pinned, 'http://keycloak:8080/realms/demo').ok, false)
    assert.equal(checkPublishedIssuer(pinned, 'https://kc.example.com/realms/demo/').ok, false)
    const tenant = settings({
      authority: 'https://login.microsoftonline.com/common/v2.0',
      issuer: `https://login.microsoftonline.com/${TENANT}/v2.0`,
    })
    assert.equal(checkPublishedIssuer(tenant, ENTRA_TEMPLATE).ok, true)
  })

  test('a {tenantid} template is accepted when the authority is its URL with one tenant segment, not another host or path', () => {
    for (const authority of [
      'https://login.microsoftonline.com/common/v2.0',
      'https://login.microsoftonline.com/organizations/v2.0/',
      `https://login.microsoftonline.com/${TENANT}/v2.0`,
    ]) {
      assert.equal(checkPublishedIssuer(settings({ authority }), ENTRA_TEMPLATE).ok, true, authority)
    }
    for (const authority of [
      'https://login.microsoftonline.com/a/b/v2.0',
      'https://login.microsoftonline.com/v2.0',
      'https://evil.example.com/common/v2.0',
      'https://login.microsoftonline.com/../v2.0',
      'https://login.microsoftonline.com/common/v1.0',
    ]) {
      assert.equal(checkPublishedIssuer(settings({ authority }), ENTRA_TEMPLATE).ok, false, authority)
    }
  })

  test('a template fills in only single path segments, the same tenant in every place', () => {
    assert.equal(instantiates('https://h/{tenantid}/v2.0', 'https://h/abc/v2.0'), true)
    assert.equal(instantiates('https://h/{tenantid}/v2.0', 'https://h/a/b/v2.0'), false)
    assert.equal(instantiates('https://h/{tenantid}/v2.0', 'https://h/../v2.0'), false)
    assert.equal(instantiates('https://h/{tenantid}/v2.0', 'https://h//v2.0'), false)
    assert.equal(instantiates('https://h/{tenantid}/v2.0', 'https://h/a?b/v2.0'), false)
    assert.equal(instantiates('https://h/{tenantid}/x/{tenantid}', 'https://h/a/x/b'), false)
    assert.equal(
      instantiates('https://h.x/{tenantid}', 'https://hxx/a'),
      false,
      'a dot in the template is not a wildcard',
    )
  })
})

describe('the issuer a token is held to', () => {
  test('a single-issuer IdP: always the published issuer, whatever the token says', () => {
    assert.deepEqual(
      expectedTokenIssuer(settings(), 'https://kc.example.com/realms/demo', { iss: 'https://evil.example.com' }),
      { ok: true, issuer: 'https://kc.example.com/realms/demo' },
    )
    assert.deepEqual(
      expectedTokenIssuer(settings({ issuer: 'https://pinned.example.com' }), 'https://pinned.example.com', {
        iss: 'https://evil.example.com',
        tid: TENANT,
      }),
      { ok: true, issuer: 'https://pinned.example.com' },
    )
  })

  test('allowedIssuers lets a token carry one of those exact issuers, and nothing else', () => {
    const s = settings({ allowedIssuers: ['https://old.example.com/realms/demo'] })
    assert.deepEqual(
      expectedTokenIssuer(s, 'https://kc.example.com/realms/demo', { iss: 'https://old.example.com/realms/demo' }),
      { ok: true, issuer: 'https://old.example.com/realms/demo' },
    )
    assert.deepEqual(
      expectedTokenIssuer(s, 'https://kc.example.com/realms/demo', { iss: 'https://old.example.com/realms/demo/' }),
      { ok: true, issuer: 'https://kc.example.com/realms/demo' },
    )
    assert.deepEqual(
      expectedTokenIssuer(s, 'https://kc.example.com/realms/demo', { iss: ['https://old.example.com/realms/demo'] }),
      { ok: true, issuer: 'https://kc.example.com/realms/demo' },
    )
  })

  test("a template IdP: the token's own tid fills the template, so a token cannot claim another tenant's issuer", () => {
    const s = settings({ authority: 'https://login.microsoftonline.com/common/v2.0' })
    assert.deepEqual(
      expectedTokenIssuer(s, ENTRA_TEMPLATE, { iss: `https://login.microsoftonline.com/${TENANT}/v2.0`, tid: TENANT }),
      { ok: true, issuer: `https://login.microsoftonline.com/${TENANT}/v2.0` },
    )
    // iss of one tenant, tid of another: held to the tid's issuer, so the iss check that follows fails.
    assert.deepEqual(
      expectedTokenIssuer(s, ENTRA_TEMPLATE, { iss: `https://login.microsoftonline.com/${OTHER}/v2.0`, tid: TENANT }),
      { ok: true, issuer: `https://login.microsoftonline.com/${TENANT}/v2.0` },
    )
  })

  test('a template IdP token without tid (a logout token) is held to the tenant its iss names, within the allowed tenants', () => {
    const s = settings({ authority: 'https://login.microsoftonline.com/common/v2.0' })
    const iss = `https://login.microsoftonline.com/${TENANT}/v2.0`
    assert.deepEqual(expectedTokenIssuer(s, ENTRA_TEMPLATE, { iss }), { ok: true, issuer: iss })
    assert.equal(expectedTokenIssuer({ ...s, allowedTenants: [OTHER] }, ENTRA_TEMPLATE, { iss }).ok, false)
    for (const hostile of [
      'https://login.microsoftonline.com/a/b/v2.0',
      'https://evil.example.com/x/v2.0',
      'https://login.microsoftonline.com/../v2.0',
      `https://login.microsoftonline.com/${TENANT}/v2.0/extra`,
    ]) {
      assert.equal(expectedTokenIssuer(s, ENTRA_TEMPLATE, { iss: hostile }).ok, false, hostile)
    }
  })

  test('a template IdP refuses a token without a usable tid, and tenants or issuers outside the allowed lists', () => {
    const s = settings({ authority: 'https://login.microsoftonline.com/common/v2.0' })
    for (const tid of [undefined, '', 42, '../x', 'a/b', `${TENANT}/v2.0?x=`, 'x'.repeat(200), ['a']]) {
      const outcome = expectedTokenIssuer(
        s,
        ENTRA_TEMPLATE,
        typeof tid === 'string' ? { tid, iss: `https://login.microsoftonline.com/${TENANT}/v2.0` } : { tid },
      )
      assert.equal(outcome.ok, false, JSON.stringify(tid))
      assert.equal(!outcome.ok && outcome.refusal.cause, 'tenant_missing')
    }
    const tenants = settings({ authority: s.authority, allowedTenants: [TENANT] })
    assert.equal(expectedTokenIssuer(tenants, ENTRA_TEMPLATE, { tid: TENANT }).ok, true)
    const refused = expectedTokenIssuer(tenants, ENTRA_TEMPLATE, { tid: OTHER })
    assert.deepEqual(refused, {
      ok: false,
      refusal: { cause: 'tenant_not_allowed', expected: TENANT, received: OTHER },
    })
    const issuers = settings({
      authority: s.authority,
      allowedIssuers: [`https://login.microsoftonline.com/${TENANT}/v2.0`],
    })
    assert.equal(expectedTokenIssuer(issuers, ENTRA_TEMPLATE, { tid: TENANT }).ok, true)
    assert.equal(!expectedTokenIssuer(issuers, ENTRA_TEMPLATE, { tid: OTHER }).ok && 'refused', 'refused')
  })

  test('several issuers are accepted only with a template or an extra allowed issuer, never with oidc.issuer', () => {
    assert.equal(acceptsSeveralIssuers(settings(), 'https://kc.example.com/realms/demo'), false)
    assert.equal(
      acceptsSeveralIssuers(
        settings({ allowedIssuers: ['https://kc.example.com/realms/demo'] }),
        'https://kc.example.com/realms/demo',
      ),
      false,
    )
    assert.equal(
      acceptsSeveralIssuers(
        settings({ allowedIssuers: ['https://old.example.com'] }),
        'https://kc.example.com/realms/demo',
      ),
      true,
    )
    assert.equal(acceptsSeveralIssuers(settings(), ENTRA_TEMPLATE), true)
    assert.equal(
      acceptsSeveralIssuers(settings({ issuer: `https://login.microsoftonline.com/${TENANT}/v2.0` }), ENTRA_TEMPLATE),
      false,
    )
  })
})

describe('client authentication from discovery', () => {
  const secret = { clientAuth: undefined, clientSecret: 's', privateKeyJwk: undefined }
  const key = { kty: 'EC' }

  test('client_secret_basic when listed or when the IdP lists nothing; client_secret_post when only that is listed', () => {
    assert.equal(chooseClientAuth(secret, ['client_secret_basic', 'client_secret_post']).method, 'client_secret_basic')
    assert.equal(chooseClientAuth(secret, undefined).method, 'client_secret_basic')
    assert.deepEqual(chooseClientAuth(secret, ['client_secret_post', 'private_key_jwt']), {
      method: 'client_secret_post',
      fromDiscovery: true,
      unlisted: false,
    })
  })

  test('private_key_jwt first when a key is configured and listed; the secret when the IdP does not list it', () => {
    assert.equal(
      chooseClientAuth({ ...secret, privateKeyJwk: key }, ['client_secret_basic', 'private_key_jwt']).method,
      'private_key_jwt',
    )
    assert.equal(
      chooseClientAuth({ ...secret, privateKeyJwk: key }, ['client_secret_post']).method,
      'client_secret_post',
    )
    assert.equal(
      chooseClientAuth({ ...secret, clientSecret: undefined, privateKeyJwk: key }, undefined).method,
      'private_key_jwt',
    )
  })

  test('a configured oidc.clientAuth is used as given; nothing usable listed is flagged, hostile lists do not throw', () => {
    assert.deepEqual(chooseClientAuth({ ...secret, clientAuth: 'client_secret_post' }, ['client_secret_basic']), {
      method: 'client_secret_post',
      fromDiscovery: false,
      unlisted: false,
    })
    assert.deepEqual(chooseClientAuth(secret, ['none', 'tls_client_auth']), {
      method: 'client_secret_basic',
      fromDiscovery: true,
      unlisted: true,
    })
    for (const listed of ['client_secret_post', 42, null, { 0: 'client_secret_post' }, [null, 7]]) {
      assert.equal(chooseClientAuth(secret, listed).method, 'client_secret_basic', JSON.stringify(listed))
    }
  })
})

describe('discovery and end-session URLs', () => {
  test("the discovery URL is the same with or without the authority's trailing slash", () => {
    assert.equal(
      discoveryUrl('https://kc.example.com/realms/demo/').href,
      'https://kc.example.com/realms/demo/.well-known/openid-configuration',
    )
    assert.equal(
      discoveryUrl('https://kc.example.com/realms/demo').href,
      'https://kc.example.com/realms/demo/.well-known/openid-configuration',
    )
    assert.equal(
      discoveryUrl('https://tenant.auth0.com/').href,
      'https://tenant.auth0.com/.well-known/openid-configuration',
    )
  })

  test('endSessionParams placeholders are filled in as values, never as parameters or markup', () => {
    const values = {
      post_logout_redirect_uri: 'https://app.example.com/signout-callback-oidc',
      client_id: 'spa&x=1',
      state: 's',
    }
    assert.deepEqual(
      endSessionExtras(
        { returnTo: '{post_logout_redirect_uri}', client_id: '{client_id}', fixed: 'a{state}b' },
        values,
      ),
      { returnTo: values.post_logout_redirect_uri, client_id: 'spa&x=1', fixed: 'asb' },
    )
    assert.deepEqual(endSessionExtras({ x: '{unknown}' }, values), { x: '{unknown}' })
  })
})

test('an allowed issuer need not be a URL: Google id_tokens that carry "accounts.google.com" are held to it', () => {
  const s = {
    authority: 'https://accounts.google.com',
    issuer: undefined,
    allowedIssuers: ['accounts.google.com'],
    allowedTenants: undefined,
  }
  assert.deepEqual(expectedTokenIssuer(s, 'https://accounts.google.com', { iss: 'accounts.google.com' }), {
    ok: true,
    issuer: 'accounts.google.com',
  })
  assert.deepEqual(expectedTokenIssuer(s, 'https://accounts.google.com', { iss: 'https://accounts.google.com' }), {
    ok: true,
    issuer: 'https://accounts.google.com',
  })
  assert.deepEqual(
    expectedTokenIssuer(s, 'https://accounts.google.com', { iss: 'evil.example.com' }),
    { ok: true, issuer: 'https://accounts.google.com' },
    'any other iss is held to the published one (and fails the check)',
  )
})
