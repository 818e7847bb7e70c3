"""Write docs/configuration.md from the config schema (`--check`: fail when it is stale)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cxrflow.config import config_markdown  # noqa: E402

DOC = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"

if __name__ == "__main__":
    text = config_markdown()
    if "--check" in sys.argv[1:]:
        if not DOC.is_file() or DOC.read_text(encoding="utf-8") != text:
            sys.exit(f"{DOC} is stale: run python scripts/config_docs.py")
    else:
        DOC.parent.mkdir(exist_ok=True)
        DOC.write_text(text, encoding="utf-8")
