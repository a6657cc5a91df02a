"""classical-fallback: solves classical work items with OR-Tools CP-SAT."""
