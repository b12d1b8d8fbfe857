// Objective text written by the front end (the same strings the Python grammar reads).

/** Layer name as the objective grammar wants it (quoted unless a plain dotted identifier). */
export function quoteLayer(layer: string): string {
  if (/^[A-Za-z_][A-Za-z0-9_.]*$/.test(layer) && !["True", "False", "None"].includes(layer)) {
    return layer;
  }
  return layer.includes("'") ? `"${layer}"` : `'${layer}'`;
}

/** Same text as lucid_widgets.expression.unit_term (+ the grid's negative toggle). */
export function unitTerm(layer: string, unit: number, kind: string, negative: boolean): string {
  const term = kind === "neuron" ? `neuron(${quoteLayer(layer)}, ${unit})` : `${quoteLayer(layer)}:${unit}`;
  return negative ? `-${term}` : term;
}
