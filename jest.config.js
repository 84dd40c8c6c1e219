/** Jest runs the TypeScript sources directly through ts-jest. */
module.exports = {
  preset: 'ts-jest',
  testEnvironment: 'node',
  roots: ['<rootDir>/test'],
  testMatch: ['**/*.test.ts'],
  testTimeout: 120000,
  // arquero ships ES modules only; jest's CommonJS runtime loads its UMD bundle instead.
  moduleNameMapper: { '^arquero$': '<rootDir>/node_modules/arquero/dist/arquero.js' },
  transform: { '^.+\\.ts$': ['ts-jest', { tsconfig: 'tsconfig.json', diagnostics: { warnOnly: false } }] },
};
