/** The register parser is part of the library (`symphony-relay evidence` reads it too). */
export {
  ID,
  parseRegister,
  REGISTER,
  type RegisterRow,
  type TestReference,
} from '../../src/evidence/register.ts';
