"""jupyter_kernel_test's standard checks against the `chromatune` kernel (run by test/kernel.test.ts).

Every sample is filled in so that every check runs; a check skipped here means a missing feature.
"""
import unittest

import jupyter_kernel_test


class ChromaTuneKernelTests(jupyter_kernel_test.KernelTests):
    kernel_name = "chromatune"
    language_name = "typescript"
    file_extension = ".ts"

    code_hello_world = "console.log('hello, world')"
    code_stderr = "console.error('oops')"
    code_generate_error = "throw new Error('boom')"
    code_page_something = "Math.floor?"
    code_clear_output = "import { clearOutput } from 'chromatune/notebook/output'; clearOutput()"

    code_execute_result = [
        {"code": "6*7", "result": "42"},
        {"code": "'ab' + 'c'", "result": "'abc'"},
        {"code": "[1, 2].map((x) => x * 2)", "result": "[ 2, 4 ]"},
        {
            "code": "({ toMimeBundle: () => ({ 'text/plain': 'swatch', 'text/html': '<b>swatch</b>' }) })",
            "mime": "text/html",
            "result": "<b>swatch</b>",
        },
    ]
    code_display_data = [
        {
            "code": "import { display } from 'chromatune/display/mime'; "
            "display({ 'text/plain': 'rows', 'text/html': '<table></table>' })",
            "mime": "text/html",
        },
        {
            "code": "import { display } from 'chromatune/display/mime'; "
            "display({ 'text/plain': 'p', 'application/vnd.chromatune.nodes+json': { n: 1 } })",
            "mime": "application/vnd.chromatune.nodes+json",
        },
    ]

    completion_samples = [
        {"text": "Math.fl", "matches": ["floor"]},
        {"text": "const chromatuneAlpha = 1; chromatuneAl", "matches": ["chromatuneAlpha"]},
    ]
    complete_code_samples = ["1 + 1", "const x = 1;", "function f() {\n  return 1;\n}"]
    incomplete_code_samples = ["function f() {", "const a = [1,", "if (true) {\n  console.log(1);"]
    invalid_code_samples = ["1 +* 2", "const = 5;"]

    code_inspect_sample = "Math.floor"
    code_history_pattern = "6?7"
    supported_history_operations = ("tail", "range", "search")


if __name__ == "__main__":
    unittest.main()
