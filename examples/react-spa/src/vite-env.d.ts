/// <reference types="vite/client" />

interface ImportMetaEnv {
  /** Path the "Call the API" button starts with (default /api/hello, the demo API). */
  readonly VITE_API_PATH?: string
}
