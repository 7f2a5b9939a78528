/** A setting (or the folder or file it names) that cannot work: the CLI prints its message and exits 2. */
export class ConfigError extends Error {
  override name = 'ConfigError';
}
