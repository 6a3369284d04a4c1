#!/usr/bin/env python3
"""Extracts the two prompts of the method's released code, byte for byte, as test data.

Usage: python3 tests/reference/extract_prompts.py RELEASED_DIR [OUT_DIR]
  RELEASED_DIR  a checkout of the method's released code (scripts/generate_llava_next_summaries.py
                and README.md are read; nothing is imported or run)
  OUT_DIR       default tests/data/prompts

Writes (no trailing newline added; {title} stays a placeholder):
  released-script-prompt.txt  the user text of generate_batch_summaries' LLaVA-NeXT prompt: what
                              lies between "[INST] <image>\\n" and " [/INST]", line breaks and
                              trailing spaces included
  released-readme-prompt.txt  the text quoted after "**Prompt**:" in README.md
tests/test_prompt.c compares the `script` and `paper` presets with these files.
Standard library only.
"""
import ast
import os
import re
import sys

HEAD, TAIL = "[INST] <image>\n", " [/INST]"


def script_prompt(path):
    """The f-string assigned to `prompt` in generate_batch_summaries, {title} kept as a placeholder."""
    tree = ast.parse(open(path, encoding="utf-8").read(), path)
    fn = next(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == "generate_batch_summaries")
    for node in ast.walk(fn):
        if isinstance(node, ast.Assign) and [getattr(t, "id", None) for t in node.targets] == ["prompt"]:
            parts = []
            for v in node.value.values:
                if isinstance(v, ast.Constant):
                    parts.append(v.value)
                elif isinstance(v, ast.FormattedValue) and isinstance(v.value, ast.Name):
                    parts.append("{%s}" % v.value.id)
                else:
                    sys.exit(f"{path}:{v.lineno}: unexpected part of the prompt f-string")
            text = "".join(parts)
            if not (text.startswith(HEAD) and text.endswith(TAIL)):
                sys.exit(f"{path}:{node.lineno}: the prompt is not [INST] <image>\\n ... [/INST]")
            return text[len(HEAD):-len(TAIL)]
    sys.exit(f"{path}: no `prompt = f\"...\"` in generate_batch_summaries")


def readme_prompt(path):
    for line in open(path, encoding="utf-8"):
        m = re.match(r'^- \*\*Prompt\*\*: "(.*)"\s*$', line)
        if m:
            return m.group(1)
    sys.exit(f"{path}: no '- **Prompt**: \"...\"' line")


def write(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8", newline="") as f:
        f.write(text)
    os.replace(tmp, path)


def main():
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    rel = sys.argv[1]
    out = sys.argv[2] if len(sys.argv) == 3 else os.path.join(os.path.dirname(__file__), "..", "data", "prompts")
    os.makedirs(out, exist_ok=True)
    write(os.path.join(out, "released-script-prompt.txt"),
          script_prompt(os.path.join(rel, "scripts", "generate_llava_next_summaries.py")))
    write(os.path.join(out, "released-readme-prompt.txt"), readme_prompt(os.path.join(rel, "README.md")))


if __name__ == "__main__":
    main()
