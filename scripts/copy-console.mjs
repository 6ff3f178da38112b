// Copies the admin console's page, script and styles beside the compiled admin handler
// (dist/ops/console), where src/ops/admin-console.ts reads them from.
import { cpSync, mkdirSync } from 'node:fs'

const from = new URL('../src/ops/console/', import.meta.url)
const to = new URL('../dist/ops/console/', import.meta.url)
mkdirSync(to, { recursive: true })
for (const file of ['index.html', 'app.js', 'app.css']) cpSync(new URL(file, from), new URL(file, to))
