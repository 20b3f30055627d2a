"""CloudFormation as it deploys: the template's Conditions evaluated for a set of parameter values, and the
intrinsic functions the templates use evaluated as CloudFormation would."""

import re

PSEUDO = {
    "AWS::Partition": "aws",
    "AWS::Region": "eu-west-1",
    "AWS::AccountId": "123456789012",
    "AWS::StackName": "newsgen-train",
    "AWS::URLSuffix": "amazonaws.com",
}
NO_VALUE = object()  # what AWS::NoValue leaves: nothing


def as_list(value) -> list:
    return value if isinstance(value, list) else [value]


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


def resolve(node, params: dict, conds: dict, *, only_conditions: bool = False):
    """Evaluate the intrinsic functions the template uses, as CloudFormation would for these parameters;
    `only_conditions`: only Fn::If and AWS::NoValue, every other intrinsic left as it is."""

    def lookup(name: str):
        if name in PSEUDO:
            return PSEUDO[name]
        if name == "AWS::NoValue":
            return NO_VALUE
        if name in params:
            return params[name]
        return f"<{name}>"  # a resource's Ref / GetAtt: a placeholder

    def sub(template: str, variables: dict) -> str:
        def one(match):
            name = match.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            value = variables[name] if name in variables else lookup(name)
            assert isinstance(value, (str, int, float)), f"${{{name}}} is not a string: {value!r}"
            return str(value)

        return re.sub(r"\$\{([^}]+)\}", one, template)

    def walk(node):
        if isinstance(node, list):
            items = [walk(item) for item in node]
            return [item for item in items if item is not NO_VALUE]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            ((key, arg),) = node.items()
            if only_conditions and key != "Fn::If" and node != {"Ref": "AWS::NoValue"}:
                return {key: walk(arg)}
            if key == "Ref":
                return lookup(arg)
            if key == "Fn::Sub":
                if isinstance(arg, str):
                    return sub(arg, {})
                return sub(arg[0], {k: walk(v) for k, v in arg[1].items()})
            if key == "Fn::Join":
                delimiter, items = arg
                assert isinstance(delimiter, str), "a Fn::Join delimiter must be a literal"
                return delimiter.join(str(item) for item in walk(items))
            if key == "Fn::Split":
                delimiter, text = arg
                assert isinstance(delimiter, str), "a Fn::Split delimiter must be a literal"
                return walk(text).split(delimiter)
            if key == "Fn::Select":
                index, items = arg
                return walk(items)[int(walk(index))]
            if key == "Fn::If":
                name, yes, no = arg
                return walk(yes if conds[name] else no)
            if key == "Fn::GetAtt":
                target = arg if isinstance(arg, str) else ".".join(arg)
                return f"<{target}>"
            if key == "Fn::Base64":
                return walk(arg)
        resolved = {key: walk(value) for key, value in node.items()}
        return {key: value for key, value in resolved.items() if value is not NO_VALUE}

    return walk(node)
