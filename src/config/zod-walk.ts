/** The part of a zod 4 schema node that walking the configuration schema reads. */
export interface ZodLike {
  _zod: { def: { type: string; [key: string]: unknown } }
}

/** Through optional/default/prefault/nullable wrappers and pipes to the shape the input must have. */
export function unwrap(node: ZodLike): ZodLike {
  for (;;) {
    const def = node._zod.def
    if (
      def.type === 'optional' ||
      def.type === 'default' ||
      def.type === 'prefault' ||
      def.type === 'nullable' ||
      def.type === 'readonly' ||
      def.type === 'nonoptional' ||
      def.type === 'catch'
    )
      node = def.innerType as ZodLike
    else if (def.type === 'pipe') node = def.in as ZodLike
    else return node
  }
}
