import react from '@vitejs/plugin-react'
import { defineConfig } from 'vite'

// Where gatehouse listens during development (`npm run dev`). The dev server forwards gatehouse's
// paths to it, so the browser sees one origin (http://localhost:5173): the session cookie stays
// first-party and no CORS is involved.
const gatehouse = process.env.GATEHOUSE_URL ?? 'http://localhost:8080'

export default defineConfig({
  plugins: [react()],
  server: {
    port: 5173,
    strictPort: true,
    proxy: {
      // changeOrigin stays false: gatehouse sees Host: localhost:5173, the origin the browser uses.
      '/bff': { target: gatehouse }, // login, user, logout, session-events (SSE), silent login
      '/api': { target: gatehouse }, // remoteApis: gatehouse attaches the access token
      '/signin-oidc': { target: gatehouse },
      '/signout-callback-oidc': { target: gatehouse },
    },
  },
})
