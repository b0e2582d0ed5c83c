"""What a reader's statement may do, and who enforces it.

ClickHouse enforces it: readers' statements run with ``readonly=1`` (chDB: a session of
their own, ``backends.ChdbBackend.read``; a server: a per-query setting). That refuses
writes, DDL, ``SET``/``SETTINGS`` and every table function that reaches files or the
network. chDB runs ClickHouse in its "local" mode, which leaves four doors open even under
``readonly=1``; ``local_mode_refusal`` closes them on the engine's own parse of the
statement (see there). ``check_read_only`` is only a friendly early error for people.
"""

from __future__ import annotations

import re

from .errors import QueryRejected

ALLOWED = ("SELECT", "WITH", "SHOW", "DESCRIBE", "DESC", "EXPLAIN", "EXISTS")
_FIRST_WORD = re.compile(r"[A-Za-z]+")


def check_read_only(sql: str) -> str:
    """One read-only statement, trailing ``;`` allowed; QueryRejected otherwise.

    A courtesy, not a defence: it knows quotes and comments well enough to say early and
    clearly what the engine would refuse anyway.
    """
    code = _code_only(sql)
    stmt = sql.strip()
    while stmt.endswith(";"):
        stmt = stmt[:-1].rstrip()
    body = code.strip().rstrip("; \t\r\n")
    if not body:
        raise QueryRejected("empty query")
    word = _FIRST_WORD.match(body.lstrip("( \t\r\n"))
    if word is None or word.group().upper() not in ALLOWED:
        raise QueryRejected(
            "only one SELECT, WITH, SHOW, DESCRIBE, EXPLAIN or EXISTS statement may be run here"
        )
    if ";" in body:
        raise QueryRejected("one statement at a time (found ';' between statements)")
    return stmt


def _code_only(sql: str) -> str:
    """``sql`` with comments and the insides of quotes blanked (as ClickHouse's lexer sees them).

    An unterminated comment or quote is refused: the engine would refuse it too.
    """
    out: list[str] = []
    i, n = 0, len(sql)
    while i < n:
        c = sql[i]
        two = sql[i:i + 2]
        if two == "--" or (c == "#" and sql[i + 1:i + 2] in (" ", "!")):
            end = sql.find("\n", i)
            i = n if end < 0 else end
            out.append(" ")
        elif two == "/*":
            end = sql.find("*/", i + 2)
            if end < 0:
                raise QueryRejected("a /* comment is not closed")
            i = end + 2
            out.append(" ")
        elif c in "'\"`":
            j = i + 1
            while True:
                if j >= n:
                    raise QueryRejected(f"a {c} quote is not closed")
                if sql[j] == "\\" or (sql[j] == c and sql[j + 1:j + 2] == c):
                    j += 2  # an escaped character, or a doubled quote
                elif sql[j] == c:
                    break
                else:
                    j += 1
            out.append(c + c)
            i = j + 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def escape_param(value: str) -> str:
    """A query parameter's text form: ClickHouse unescapes ``\\``, newlines and tabs in it."""
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace("\t", "\\t").replace("\r", "\\r")


# The statement as ClickHouse's parser formats it back: one statement (a second one is a
# syntax error), comments gone, keywords upper-case. This runs in the read-only session and
# executes nothing of the user's: the text is a parameter, i.e. data.
CANONICAL_SQL = "SELECT formatQuerySingleLine({q:String})"


def local_mode_refusal(canonical: str, ast: str | None) -> str | None:
    """Why chDB must not run ``canonical`` although readonly=1 would, or None.

    ``canonical`` is the engine's formatting of the one statement; ``ast`` its ``EXPLAIN
    AST`` (None before it is asked for: the text checks come first, since an ``INTO
    OUTFILE`` or ``FORMAT`` clause would apply to the EXPLAIN itself). In chDB's local mode:

    * the scalar ``file(path)`` reads any file: its access check is skipped in local mode;
    * ``INTO OUTFILE`` is written by the embedded client, readonly or not;
    * ``DESCRIBE TABLE file(...)``/``url(...)`` opens the file or URL to infer its columns;
    * ``EXPLAIN SELECT file(...)`` folds the call into a constant and prints it.

    A user ``FORMAT`` clause is refused too (results are read as JSONCompact; ``--format``
    picks the output). Text checks run on the engine's canonical text, so they can only
    err towards refusing (a string literal that happens to contain ``INTO OUTFILE``).
    """
    word = _FIRST_WORD.match(canonical)
    if word is None or word.group().upper() not in ALLOWED:
        return "only SELECT, WITH, SHOW, DESCRIBE, EXPLAIN or EXISTS statements may be run here"
    if "INTO OUTFILE" in canonical:
        return "INTO OUTFILE is not allowed: readers write nothing"
    if re.search(r"\sFORMAT\s", canonical):
        return "a FORMAT clause is not allowed here (use --format)"
    if ast is None:
        return None
    stack: list[str] = []
    describe = False
    for line in ast.splitlines():
        if not line.strip():
            continue
        depth = len(line) - len(line.lstrip(" "))
        node = line.strip()
        del stack[depth:]
        parent = stack[-1] if stack else ""
        if not stack and node.startswith("DescribeQuery"):
            describe = True
        is_function = node.startswith("Function ")
        if is_function and re.match(r"Function file\b", node) and not parent.startswith("TableExpression"):
            return "the file() function reads the host's files: not allowed here"
        if is_function and describe and parent.startswith("TableExpression"):
            return "DESCRIBE of a table function is not allowed here (it opens the file or URL)"
        stack.append(node)
    return None
