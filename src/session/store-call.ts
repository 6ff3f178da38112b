import { GatehouseError } from '../errors.ts'

/**
 * One call to the session store: whatever it throws (a lost connection, a timeout, a driver's own
 * error) becomes the request's 503 store_unavailable, with the store's error kept as the cause.
 */
export async function storeCall<T>(operation: () => Promise<T>): Promise<T> {
  try {
    return await operation()
  } catch (err) {
    throw new GatehouseError('store_unavailable', undefined, { cause: err })
  }
}
