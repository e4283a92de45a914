#!/usr/bin/env python3
"""After `make docs` has built the catalogs: fails when a public symbol declared in
Sources/ has no doc comment, or when a module's top-level public symbol is missing from
the topics of its catalog's root page (Sources/M/M.docc/M.md). DocC itself neither
warns about the first nor, since it curates leftovers by itself, about the second.

Reads the symbol graphs the docc plugin extracted: .build/*/extracted-symbols/*/M/."""
import glob
import json
import os
import sys

root = os.getcwd()
sources = "file://" + os.path.join(root, "Sources") + "/"
problems = []
for module in sys.argv[1:]:
    graphs = glob.glob(f".build/*/extracted-symbols/*/{module}/*.symbols.json")
    if not graphs:
        problems.append(f"{module}: no symbol graph under .build/*/extracted-symbols (run the docc plugin first)")
        continue
    page = open(f"Sources/{module}/{module}.docc/{module}.md", encoding="utf-8").read()
    seen = set()
    for path in graphs:
        for symbol in json.load(open(path))["symbols"]:
            if symbol.get("accessLevel") not in ("public", "open"):
                continue
            location = symbol.get("location", {})
            uri = location.get("uri", "")
            if not uri.startswith(sources):
                continue  # synthesized, or inherited from another module
            name = ".".join(symbol["pathComponents"])
            where = f"{uri[len('file://' + root + '/'):]}:{location['position']['line'] + 1}"
            if (where, name) in seen:
                continue
            seen.add((where, name))
            if not symbol.get("docComment"):
                problems.append(f"{where}: public {name} has no doc comment")
            # An extension of another module's type (ReactorAsync's ReactorHandle.listen) has
            # no page of its own in this catalog to list: its members are checked above.
            if len(symbol["pathComponents"]) == 1 and symbol["kind"]["identifier"] != "swift.extension":
                top = symbol["pathComponents"][0]
                if f"``{top}``" not in page and f"``Swift/{top}``" not in page:
                    problems.append(f"{where}: {top} is not in the topics of Sources/{module}/{module}.docc/{module}.md")
for problem in problems:
    print(problem)
if problems:
    sys.exit(f"check-docs: {len(problems)} problem(s)")
print(f"check-docs: every public symbol of {', '.join(sys.argv[1:])} has a doc comment and a topic")
