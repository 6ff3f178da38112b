/** A client of GET /bff/session-events for tests: the events, in order, as they arrive. */
export async function openEvents(
  origin: string,
  cookie: string,
): Promise<{ status: number; next(name: string): Promise<Record<string, unknown>>; close(): void }> {
  const abort = new AbortController()
  const res = await fetch(`${origin}/bff/session-events`, {
    headers: { cookie, 'sec-fetch-site': 'same-origin' },
    signal: abort.signal,
  })
  const events: Array<{ name: string; data: Record<string, unknown> }> = []
  const waiters: Array<() => void> = []
  if (res.status === 200) {
    void (async () => {
      let buffer = ''
      try {
        const reader = res.body!.getReader()
        for (let read = await reader.read(); !read.done; read = await reader.read()) {
          buffer += Buffer.from(read.value).toString()
          let end: number
          while ((end = buffer.indexOf('\n\n')) !== -1) {
            const block = buffer.slice(0, end)
            buffer = buffer.slice(end + 2)
            const name = /^event: (.+)$/m.exec(block)?.[1]
            const data = /^data: (.+)$/m.exec(block)?.[1]
            if (name && data) events.push({ name, data: JSON.parse(data) as Record<string, unknown> })
            for (const wake of waiters.splice(0)) wake()
          }
        }
      } catch {
        // aborted
      }
    })()
  }
  return {
    status: res.status,
    async next(name) {
      for (;;) {
        const found = events.findIndex((e) => e.name === name)
        if (found !== -1) return events.splice(found, 1)[0]!.data
        await new Promise<void>((resolve) => waiters.push(resolve))
      }
    },
    close: () => abort.abort(),
  }
}
