/** The values `oidc.endSessionParams` may place, e.g. Auth0's `{ "returnTo": "{post_logout_redirect_uri}" }`. */
export const END_SESSION_PLACEHOLDERS = ['post_logout_redirect_uri', 'client_id', 'state'] as const

export type EndSessionValues = Record<(typeof END_SESSION_PLACEHOLDERS)[number], string>

/** `oidc.endSessionParams` with its placeholders filled in (validation allows no others). */
export function endSessionExtras(
  template: Readonly<Record<string, string>>,
  values: EndSessionValues,
): Record<string, string> {
  const out: Record<string, string> = {}
  for (const [name, value] of Object.entries(template)) {
    out[name] = value.replace(/\{([a-z_]+)\}/g, (whole, key: string) =>
      key in values ? values[key as keyof EndSessionValues] : whole,
    )
  }
  return out
}
