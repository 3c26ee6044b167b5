"""The paper's results table, to print ours beside it.

Source: Yuxiang Wei, Hojae Han, Rajhans Samdani, "Arctic-SnowCoder: Demystifying
High-Quality Data in Code Pretraining", arXiv:2409.02326 (2024), the main
results table (greedy pass@1, in percent; HumanEval+ and MBPP+ are EvalPlus'
plus tests; EvoEval is the mean over its five default categories;
BigCodeBench is the complete split, full set). Also in ``docs/recipe.md``,
"Evaluation".
"""
from __future__ import annotations

CITATION = "Wei, Han, Samdani. Arctic-SnowCoder (arXiv:2409.02326, 2024), main results table"
COLUMNS = ("humaneval+", "mbpp+", "evoeval", "bigcodebench")
COLUMN_TITLES = {"humaneval+": "HumanEval+", "mbpp+": "MBPP+", "evoeval": "EvoEval", "bigcodebench": "BigCodeBench"}

# model -> (training tokens, {column: pass@1 %})
PAPER_TABLE: dict[str, tuple[str, dict[str, float]]] = {
    "StarCoderBase-3B": ("1T", {"humaneval+": 17.7, "mbpp+": 36.8, "evoeval": 11.6, "bigcodebench": 5.9}),
    "SmolLM-1.7B": ("1T", {"humaneval+": 15.9, "mbpp+": 34.7, "evoeval": 10.0, "bigcodebench": 2.5}),
    "Phi-1.5-1.3B": ("150B", {"humaneval+": 31.7, "mbpp+": 43.7, "evoeval": 20.6, "bigcodebench": 14.3}),
    "StarCoder2-3B": ("3.3T+", {"humaneval+": 27.4, "mbpp+": 49.2, "evoeval": 19.0, "bigcodebench": 21.4}),
    "DeepSeek-Coder-1.3B": ("2T", {"humaneval+": 28.7, "mbpp+": 48.1, "evoeval": 19.2, "bigcodebench": 22.2}),
    "Arctic-SnowCoder-alpha (phase 1)": ("500B", {"humaneval+": 14.0, "mbpp+": 27.8, "evoeval": 7.4,
                                                  "bigcodebench": 10.3}),
    "Arctic-SnowCoder-beta (phase 2)": ("550B", {"humaneval+": 21.3, "mbpp+": 34.7, "evoeval": 12.8,
                                                 "bigcodebench": 12.3}),
    "Arctic-SnowCoder-1.3B (phase 3)": ("555B", {"humaneval+": 28.0, "mbpp+": 42.9, "evoeval": 18.0,
                                                 "bigcodebench": 19.4}),
}
REFERENCE_MODEL = "Arctic-SnowCoder-1.3B (phase 3)"
