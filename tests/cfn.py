"""CloudFormation as it deploys: the template's Conditions evaluated for a set of parameter values."""


def conditions(template: dict, params: dict) -> dict:
    """Evaluate the template's Conditions (Equals / Not / And / Or / Condition) for these parameters."""
    done: dict[str, bool] = {}

    def value(node):
        if isinstance(node, dict) and "Ref" in node:
            return params[node["Ref"]]
        return node

    def evaluate(node) -> bool:
        ((fn, args),) = node.items()
        if fn == "Fn::Equals":
            return str(value(args[0])) == str(value(args[1]))
        if fn == "Fn::Not":
            return not evaluate(args[0])
        if fn == "Fn::And":
            return all(evaluate(a) for a in args)
        if fn == "Fn::Or":
            return any(evaluate(a) for a in args)
        if fn == "Condition":
            return name_value(args)
        raise AssertionError(f"unsupported condition function {fn}")

    def name_value(name: str) -> bool:
        if name not in done:
            done[name] = evaluate(template["Conditions"][name])
        return done[name]

    return {name: name_value(name) for name in template.get("Conditions", {})}
