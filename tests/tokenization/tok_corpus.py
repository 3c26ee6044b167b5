"""Hand-written text for the tokenizer tests (imported by name: a unique module name, not conftest)."""

# Hand-written edge cases that real files rarely have all at once.
SHELL_WITH_TABS = (
    "#!/bin/sh\n"
    "# build script\t\twith tabs  \n"
    "for f in *.c; do\n"
    "\tif [ -f \"$f\" ]; then   \n"
    "\t\techo \"compiling $f\"\t# trailing tab\t\n"
    "\t\tgcc -O2 -c \"$f\" \\\n"
    "\t\t    -o \"${f%.c}.o\"  \n"
    "\tfi\n"
    "done\n"
    "echo 'héllo wörld — ✓ 日本語 🚀'   \n\n\n"
)
EDGE_CASES = [
    "",
    " ",
    "\n",
    "\t",
    "   leading spaces",
    "trailing spaces   ",
    "\n\nstarts with newlines",
    "windows\r\nline\r\nends\r\n",
    "mixed \t indentation\n \t \tx = 1  \n",
    "digits 0123456789 3.14159e-10 0xDEADBEEF",
    "unicode: é e\u0301 ß 日本語 中文注释 한국어 עברית العربية 🚀 👩\u200d👩\u200d👧 𝔘",
    "controls: nul\x00 bell\x07 formfeed\x0c vtab\x0b del\x7f",
    "odd spaces: nbsp\u00a0 thin\u2009 zw\u200b bom\ufeff ls\u2028 ps\u2029",
    "sparkline \u2581\u2582\u2583\u2584\u2585\u2586\u2587\u2588 and \u2581\u2581 ",
    "literal specials <|endoftext|> <|pad|> <|fim_prefix|> <unk> <s> </s>",
    "<file_sep>a.py\nprint(1)\n<file_sep>b.py\n",
    "x" * 5000 + "\n" + " " * 300 + "y\n",
]
