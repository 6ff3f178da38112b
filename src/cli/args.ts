/** `--name value` / `--name=value` / `--flag` → map; positional words in order. Tiny on purpose. */
export interface Args {
  positional: string[]
  options: Map<string, string | true>
}

export function parseArgs(argv: readonly string[]): Args {
  const positional: string[] = []
  const options = new Map<string, string | true>()
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!
    if (!arg.startsWith('--')) {
      positional.push(arg)
      continue
    }
    const eq = arg.indexOf('=')
    if (eq !== -1) options.set(arg.slice(2, eq), arg.slice(eq + 1))
    else if (argv[i + 1] !== undefined && !argv[i + 1]!.startsWith('--')) options.set(arg.slice(2), argv[++i]!)
    else options.set(arg.slice(2), true)
  }
  return { positional, options }
}

export function stringOption(args: Args, name: string): string | undefined {
  const value = args.options.get(name)
  return typeof value === 'string' ? value : undefined
}
