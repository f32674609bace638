"""Print the lowest versions pyproject.toml admits, one ``name==floor`` a line, for pip.

Every requirement in ``project.dependencies`` and the ``test`` extra is written ``name>=floor``; this
turns each into ``name==floor`` so that the lowest-versions CI job installs exactly the declared floors
and the two cannot drift. torch is left out: CI installs the CPU build itself, first.
"""

import re
import sys
import tomllib

REQUIREMENT = re.compile(r"^([A-Za-z0-9_.-]+)>=([0-9][0-9A-Za-z.]*)$")

with open("pyproject.toml", "rb") as file:
    project = tomllib.load(file)["project"]
for requirement in project["dependencies"] + project["optional-dependencies"]["test"]:
    match = REQUIREMENT.match(requirement)
    if match is None:
        sys.exit(f"pyproject.toml: {requirement!r} is not written name>=floor")
    name, floor = match.groups()
    if name != "torch":
        print(f"{name}=={floor}")
