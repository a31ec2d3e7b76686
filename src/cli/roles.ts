import type { Command } from 'commander';
import pg from 'pg';
import {
  describeMembership,
  ensureLoginRole,
  RUNTIME_ROLES,
  type RuntimeRole,
} from '../db/roles.ts';
import { CliError, readSecretOrExit, requireDatabaseUrl } from './errors.ts';

export const LOGIN_PASSWORD_VARIABLE = 'SYMPHONY_LOGIN_PASSWORD';

export function registerRolesCommand(program: Command): void {
  const roles = program
    .command('roles')
    .description('database login roles for the relayer and producers');
  roles
    .command('create-login')
    .description(
      `create (or re-key) a LOGIN role that can only act as one runtime role; the password is read from $${LOGIN_PASSWORD_VARIABLE} (or the file $${LOGIN_PASSWORD_VARIABLE}_FILE names) and never printed; an existing role this command did not make is refused unless --force`,
    )
    .requiredOption('--name <name>', 'login role name, e.g. relay_login')
    .option('--acts-as <role>', `runtime role (${RUNTIME_ROLES.join(', ')})`, 'symphony_executor')
    .option(
      '--force',
      'take over an existing role this command did not make: replace its password, drop its other attributes and revoke every other membership',
    )
    .option(
      '--database-url <url>',
      'connection string of a role allowed to create roles (default: $DATABASE_URL)',
    )
    .action(
      async (options: { name: string; actsAs: string; force?: boolean; databaseUrl?: string }) => {
        const url = requireDatabaseUrl(options.databaseUrl, 'roles create-login');
        const password = readSecretOrExit(
          process.env,
          LOGIN_PASSWORD_VARIABLE,
          'roles create-login',
        );
        if (password === undefined) {
          throw new CliError(
            `${LOGIN_PASSWORD_VARIABLE} is not set: put the new login's password there (or in a file named by ${LOGIN_PASSWORD_VARIABLE}_FILE)`,
            2,
          );
        }
        const client = new pg.Client({
          connectionString: url,
          application_name: 'symphony-relay roles',
        });
        await client.connect();
        try {
          const result = await ensureLoginRole(client, {
            name: options.name,
            password,
            actsAs: options.actsAs as RuntimeRole,
            force: options.force === true,
          });
          const verb = result.action === 'taken over' ? 'took over (--force)' : result.action;
          console.log(`${verb} login role ${options.name}; it can act only as ${options.actsAs}`);
          if (result.revoked.length > 0) {
            console.log(`revoked from ${options.name}: ${result.revoked.join(', ')}`);
          }
          console.log(
            `memberships of ${options.name} in pg_auth_members now: ${result.memberships.map(describeMembership).join(', ')}`,
          );
        } finally {
          await client.end();
        }
      },
    );
}
