import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/', 'build/', 'node_modules/', 'data/', 'coverage/', 'test-results/'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/consistent-type-imports': 'error',
    },
  },
  {
    // The pages' scripts run in the browser, as plain scripts (no bundler, no modules).
    files: ['src/web/pages/public/**/*.js'],
    languageOptions: {
      sourceType: 'script',
      globals: Object.fromEntries(
        [
          'window',
          'document',
          'location',
          'sessionStorage',
          'fetch',
          'crypto',
          'setTimeout',
          'setInterval',
          'clearInterval',
          'EventSource',
          'URLSearchParams',
          'TextEncoder',
          'URL',
          'HTMLElement',
          'HTMLFormElement',
          'HTMLInputElement',
          'HTMLSelectElement',
          'HTMLButtonElement',
          'MessageEvent',
          'Response',
        ].map((name) => [name, 'readonly']),
      ),
    },
  },
  {
    // Tool configurations written as CommonJS (dependency-cruiser's).
    files: ['**/*.cjs'],
    languageOptions: { sourceType: 'commonjs', globals: { module: 'writable', require: 'readonly' } },
  },
  {
    // Tests read JSON answers of the API as they come.
    files: ['test/**/*.ts'],
    rules: { '@typescript-eslint/no-explicit-any': 'off' },
  },
);
