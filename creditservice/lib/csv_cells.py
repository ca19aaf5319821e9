"""CSV cells a spreadsheet will not run: the one rule for every CSV we hand out."""

# A cell starting with one of these is taken for a formula by Excel, LibreOffice and Google Sheets
# (OWASP "CSV injection"); a leading apostrophe makes it text. Tab and CR start formulas in some too.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(cell: str) -> str:
    return f"'{cell}" if cell.startswith(FORMULA_STARTS) else cell
