const UNIT_MS = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const

/** "30s" | "10m" | "8h" | "7d" | "250ms" → milliseconds; undefined when the text is not a duration. */
export function parseDuration(text: string): number | undefined {
  const match = /^(\d{1,9})(ms|s|m|h|d)$/.exec(text.trim())
  if (!match) return undefined
  return Number(match[1]) * UNIT_MS[match[2] as keyof typeof UNIT_MS]
}

const UNIT_BYTES = { b: 1, kb: 1024, mb: 1024 ** 2, gb: 1024 ** 3 } as const

/** "512kb" | "10mb" | "1gb" | "100b" → bytes; undefined when the text is not a size. */
export function parseSize(text: string): number | undefined {
  const match = /^(\d{1,9})(b|kb|mb|gb)$/i.exec(text.trim())
  if (!match) return undefined
  return Number(match[1]) * UNIT_BYTES[match[2]!.toLowerCase() as keyof typeof UNIT_BYTES]
}
