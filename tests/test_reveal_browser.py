"""The blank characters, found by drawing them: chromium draws every assigned code point, and each one that leaves no
ink must be one the renderer escapes. An oracle independent of Unicode's properties, limited to the fonts here."""

from __future__ import annotations

import icu
import pytest
from playwright.async_api import Browser

from approval_server.reveal import is_hidden

pytestmark = pytest.mark.timeout(180)

INK = """(codes) => {
  const context = document.createElement("canvas").getContext("2d");
  const blank = [];
  for (const font of ["20px monospace", "20px sans-serif"]) {
    context.font = font;
    for (const code of codes) {
      const box = context.measureText(String.fromCodePoint(code));
      const wide = box.actualBoundingBoxRight + box.actualBoundingBoxLeft;
      const tall = box.actualBoundingBoxAscent + box.actualBoundingBoxDescent;
      if (!(wide > 0.01 && tall > 0.01)) blank.push(code);
    }
  }
  return blank;
}"""


async def test_every_character_chromium_draws_blank_is_escaped(browser: Browser) -> None:
    # Every assigned code point but the ideographs and Hangul syllables (ninety thousand letters, all drawn).
    assigned = icu.UnicodeSet(
        "[^[:Cn:][:Cs:][:Co:][:Unified_Ideograph:][:Hangul_Syllable_Type=LV:][:Hangul_Syllable_Type=LVT:]]"
    )
    codes = [ord(char) for char in assigned]
    assert len(codes) > 45_000
    page = await browser.new_page()
    blank = sorted(set(await page.evaluate(INK, codes)))
    assert 0x2800 in blank  # BRAILLE PATTERN BLANK: the oracle sees what it should
    shown_as_typed = [f"U+{code:04X}" for code in blank if chr(code) not in " \n" and not is_hidden(chr(code))]
    assert shown_as_typed == []
