"""The reference parts of the documentation, printed from the code: settings from the
configuration models, every CLI command from click, the API's operations from its OpenAPI
document, event types and states from the domain, metrics from their declarations. Each
lives between `<!-- generated: NAME -->` and `<!-- end -->` in a Markdown file, and a test
fails when a file differs from what this prints (a new setting, command, event or metric
cannot go undocumented).

    python -m rotator.docsite            # rewrite every generated block in README.md and docs/
    python -m rotator.docsite --check    # exit 1 naming the stale files
"""
