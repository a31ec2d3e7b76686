import ts from 'typescript';

const TEST_FUNCTIONS = new Set(['it', 'test']);
/** Modifiers that still run the test; `skip` and `todo` prove nothing, so they do not count. */
const RUNNING_MODIFIERS = new Set(['only', 'concurrent', 'sequential', 'fails']);

/** `it`, `test`, `it.only`, `test.concurrent`, … (not `it.skip`, not `it.todo`). */
function isTestFunction(callee: ts.Expression): boolean {
  if (ts.isIdentifier(callee)) return TEST_FUNCTIONS.has(callee.text);
  if (ts.isPropertyAccessExpression(callee)) {
    return RUNNING_MODIFIERS.has(callee.name.text) && isTestFunction(callee.expression);
  }
  return false;
}

/** `it.each(table)` and `test.each(table)`, whose result is called with the title template. */
function isEachTable(callee: ts.Expression): boolean {
  return (
    ts.isCallExpression(callee) &&
    ts.isPropertyAccessExpression(callee.expression) &&
    ['each', 'for'].includes(callee.expression.name.text) &&
    isTestFunction(callee.expression.expression)
  );
}

/**
 * The titles of the tests a file declares: the first argument of every `it(…)`/`test(…)`
 * call (and `it.each(…)(…)`) that is a plain string literal. A title found elsewhere in the
 * text (a comment, a helper's string) does not count.
 */
export function declaredTestTitles(source: string, fileName = 'test.ts'): string[] {
  const file = ts.createSourceFile(
    fileName,
    source,
    ts.ScriptTarget.Latest,
    false,
    ts.ScriptKind.TS,
  );
  const titles: string[] = [];
  const visit = (node: ts.Node) => {
    if (
      ts.isCallExpression(node) &&
      (isTestFunction(node.expression) || isEachTable(node.expression))
    ) {
      const [first] = node.arguments;
      if (first && (ts.isStringLiteral(first) || ts.isNoSubstitutionTemplateLiteral(first))) {
        titles.push(first.text);
      }
    }
    ts.forEachChild(node, visit);
  };
  visit(file);
  return titles;
}
