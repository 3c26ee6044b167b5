"""Small programs in each of the recipe's 18 languages, written for these tests (so every
language is present on any machine), with the hard cases for a code tokenizer: tabs, runs
of spaces, CRLF line ends, digits, non-ASCII text and a literal U+2581 (a sparkline bar)."""

SAMPLES: dict[str, str] = {
    "python": (
        "def sparkline(values):\n"
        "    \"\"\"Bars \u2581\u2582\u2583\u2584\u2585\u2586\u2587\u2588 for a list of numbers.\"\"\"\n"
        "    bars = \"\u2581\u2582\u2583\u2584\u2585\u2586\u2587\u2588\"\n"
        "    lo, hi = min(values), max(values)\n"
        "    span = (hi - lo) or 1\n"
        "    return \"\".join(bars[int((v - lo) / span * 7)] for v in values)\n\n\n"
        "if __name__ == \"__main__\":\n"
        "\tprint(sparkline([1, 5, 22, 13, 53]))  # caf\u00e9 \u00fcber na\u00efve\n"
    ),
    "java": (
        "package org.example;\r\n\r\n"
        "public final class Counter {\r\n"
        "    private long count = 0L;\r\n"
        "    public synchronized void add(int n) {\r\n"
        "        if (n < 0) throw new IllegalArgumentException(\"n < 0: \" + n);\r\n"
        "        count += n;   // 1_000_000 max\r\n"
        "    }\r\n"
        "    public String label() { return \"Z\u00e4hler=\" + count; }\r\n"
        "}\r\n"
    ),
    "cpp": (
        "#include <vector>\n#include <string>\n\n"
        "template <typename T>\n"
        "T sum(const std::vector<T>& xs) {\n"
        "\tT total{};\n"
        "\tfor (const auto& x : xs) total += x;\n"
        "\treturn total;\n"
        "}\n\n"
        "int main() {\n"
        "    std::vector<double> v{3.14159, 2.71828, 1.41421};\n"
        "    std::string s = u8\"\u03c0 \u2248 3.14\";  // greek\n"
        "    return static_cast<int>(sum(v)) == 7 ? 0 : 1;\n"
        "}\n"
    ),
    "c": (
        "#include <stdio.h>\n\n"
        "static unsigned crc8(const unsigned char *p, size_t n)\n"
        "{\n"
        "\tunsigned crc = 0xFF;\n"
        "\twhile (n--) {\n"
        "\t\tcrc ^= *p++;\n"
        "\t\tfor (int i = 0; i < 8; i++)\n"
        "\t\t\tcrc = (crc & 0x80) ? (crc << 1) ^ 0x31 : (crc << 1);\n"
        "\t}\n"
        "\treturn crc & 0xFF;   /* \u00b5C-friendly */\n"
        "}\n"
    ),
    "javascript": (
        "'use strict';\n\n"
        "const debounce = (fn, ms = 250) => {\n"
        "  let timer = null;\n"
        "  return (...args) => {\n"
        "    clearTimeout(timer);\n"
        "    timer = setTimeout(() => fn(...args), ms);\n"
        "  };\n"
        "};\n\n"
        "module.exports = { debounce, greeting: `\u3053\u3093\u306b\u3061\u306f ${2 + 2}` };\n"
    ),
    "php": (
        "<?php\r\n"
        "declare(strict_types=1);\r\n\r\n"
        "function slugify(string $title): string {\r\n"
        "    $s = strtolower(trim($title));\r\n"
        "    $s = preg_replace('/[^a-z0-9]+/', '-', $s);\r\n"
        "    return trim($s, '-');\r\n"
        "}\r\n\r\n"
        "echo slugify(\"Cr\u00e8me Br\u00fbl\u00e9e 2024\"), PHP_EOL;\r\n"
    ),
    "csharp": (
        "using System;\nusing System.Linq;\n\n"
        "namespace Demo\n{\n"
        "    public static class Stats\n    {\n"
        "        public static double Mean(int[] xs) => xs.Length == 0 ? 0 : xs.Average();\n\n"
        "        public static void Main()\n        {\n"
        "            Console.WriteLine($\"mean = {Mean(new[] { 4, 8, 15, 16, 23, 42 }):F2} \u20ac\");\n"
        "        }\n    }\n}\n"
    ),
    "go": (
        "package main\n\n"
        "import (\n\t\"fmt\"\n\t\"strings\"\n)\n\n"
        "// Reverse returns s reversed by runes: \u00ab\u00bb safe.\n"
        "func Reverse(s string) string {\n"
        "\tr := []rune(s)\n"
        "\tfor i, j := 0, len(r)-1; i < j; i, j = i+1, j-1 {\n"
        "\t\tr[i], r[j] = r[j], r[i]\n"
        "\t}\n"
        "\treturn string(r)\n"
        "}\n\n"
        "func main() {\n\tfmt.Println(strings.ToUpper(Reverse(\"h\u00e9llo, \u4e16\u754c\")), 1e9)\n}\n"
    ),
    "typescript": (
        "interface Point { x: number; y: number }\n\n"
        "export function distance(a: Point, b: Point): number {\n"
        "  const dx = a.x - b.x, dy = a.y - b.y;\n"
        "  return Math.hypot(dx, dy);\n"
        "}\n\n"
        "export const origin: Readonly<Point> = { x: 0, y: 0 };\n"
        "console.log(distance(origin, { x: 3, y: 4 }) === 5 ? '\u2713' : '\u2717');\n"
    ),
    "sql": (
        "-- monthly revenue, \u00e0 la carte\n"
        "SELECT date_trunc('month', o.created_at) AS month,\n"
        "       SUM(oi.quantity * oi.unit_price)   AS revenue\n"
        "FROM   orders o\n"
        "JOIN   order_items oi ON oi.order_id = o.id\n"
        "WHERE  o.created_at >= DATE '2023-01-01'\n"
        "GROUP  BY 1\n"
        "ORDER  BY 1 DESC\n"
        "LIMIT  12;\n"
    ),
    "ruby": (
        "# frozen_string_literal: true\n\n"
        "module Greeter\n"
        "  def self.greet(name = 'world', times: 1)\n"
        "    Array.new(times) { \"Hola, #{name}!\" }.join(\"\\n\")\n"
        "  end\n"
        "end\n\n"
        "puts Greeter.greet('Se\u00f1or', times: 3) if $PROGRAM_NAME == __FILE__\n"
    ),
    "rust": (
        "use std::collections::HashMap;\n\n"
        "/// Counts words; `\u00e9t\u00e9` and `ete` are different words.\n"
        "pub fn word_counts(text: &str) -> HashMap<&str, usize> {\n"
        "    let mut counts = HashMap::new();\n"
        "    for w in text.split_whitespace() {\n"
        "        *counts.entry(w).or_insert(0) += 1;\n"
        "    }\n"
        "    counts\n"
        "}\n\n"
        "fn main() {\n    let c = word_counts(\"a b a \u00e9t\u00e9\");\n    assert_eq!(c[\"a\"], 2);\n}\n"
    ),
    "jupyter": (
        "# %% [markdown]\n"
        "# # Loss curve \u2581\u2583\u2585\u2587\n\n"
        "# %%\n"
        "import math\n\n"
        "losses = [2.0 * math.exp(-0.1 * step) + 0.05 for step in range(100)]\n"
        "print(f\"final loss: {losses[-1]:.4f}\")\n\n"
        "# %%\n"
        "best = min(range(len(losses)), key=losses.__getitem__)\n"
    ),
    "scala": (
        "object Fib {\n"
        "  def fib(n: Int): BigInt = {\n"
        "    @annotation.tailrec\n"
        "    def go(i: Int, a: BigInt, b: BigInt): BigInt =\n"
        "      if (i == 0) a else go(i - 1, b, a + b)\n"
        "    go(n, 0, 1)\n"
        "  }\n\n"
        "  def main(args: Array[String]): Unit = println(s\"fib(90) = ${fib(90)} \u2014 ok\")\n"
        "}\n"
    ),
    "kotlin": (
        "data class User(val id: Long, val name: String, val email: String?)\n\n"
        "fun List<User>.emails(): List<String> = mapNotNull { it.email?.lowercase() }\n\n"
        "fun main() {\n"
        "    val users = listOf(User(1, \"Ana\", \"ANA@EXAMPLE.COM\"), User(2, \"J\u00f6rg\", null))\n"
        "    println(users.emails())\t// [ana@example.com]\n"
        "}\n"
    ),
    "shell": (
        "#!/usr/bin/env bash\n"
        "set -euo pipefail\n\n"
        "for f in \"${@:-.}\"/*.log; do\n"
        "\tif [[ -s \"$f\" ]]; then\n"
        "\t\techo \"rotating $f\"   \n"
        "\t\tmv -- \"$f\" \"${f%.log}.$(date +%Y%m%d).log\"\n"
        "\tfi\n"
        "done\n"
        "echo '\u2714 done'\n"
    ),
    "dart": (
        "import 'dart:math';\n\n"
        "class Circle {\n"
        "  final double radius;\n"
        "  const Circle(this.radius);\n"
        "  double get area => pi * radius * radius;\n"
        "}\n\n"
        "void main() {\n"
        "  final c = Circle(2.5);\n"
        "  print('area: ${c.area.toStringAsFixed(3)} m\u00b2');\n"
        "}\n"
    ),
    "swift": (
        "import Foundation\n\n"
        "struct Temperature {\n"
        "    var celsius: Double\n"
        "    var fahrenheit: Double { celsius * 9 / 5 + 32 }\n"
        "}\n\n"
        "let readings = [21.5, 19.0, 23.25].map(Temperature.init(celsius:))\n"
        "for t in readings {\n"
        "    print(String(format: \"%.1f\u00b0F\", t.fahrenheit))\n"
        "}\n"
    ),
}

# Not code, but what code files hold: every hard case on its own line.
HARD_CASES = [
    "\tindented\twith\ttabs\t\n",
    "runs    of        spaces            here  \n",
    "windows\r\nline\r\nends\r\n",
    "digits 0123456789 3.14159e-10 0xDEADBEEF 1_000_000\n",
    "non-ASCII: \u00e9 e\u0301 \u00df \u65e5\u672c\u8a9e \ud55c\uad6d\uc5b4 \u05e2\u05d1\u05e8\u05d9\u05ea "
    "\u0627\u0644\u0639\u0631\u0628\u064a\u0629 \U0001f680 \U0001d518\n",
    "literal U+2581: \u2581 \u2581\u2581 a\u2581b \u2581\u2582\u2583\n",
    "specials as text: <|endoftext|> <|pad|> <|fim_prefix|> <s> </s> <unk> <0x41>\n",
    "<file_sep>src/a.py\nprint(1)\n<file_sep>src/b.py\n",
]
