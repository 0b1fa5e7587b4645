"""ConText modifier rules for diagnostic answers: (literal, category, direction, token pattern or None).

Our own set rather than medspaCy's defaults, because answers commit with words the defaults read as doubt
("most likely diagnosis: melanoma" is the answer, not a hedge) and postfix negations the defaults miss
("ulceration is absent", "melanoma ruled out"). Longer cues win over shorter ones they overlap, so "cannot be ruled
out" is a hedge and "not absent" (PSEUDO) is a double negative that leaves the finding present.
"""

from __future__ import annotations

NEG, HEDGE, HIST, FAMILY, HYPO = "NEGATED_EXISTENCE", "POSSIBLE_EXISTENCE", "HISTORICAL", "FAMILY", "HYPOTHETICAL"
FWD, BWD, BI, TERM, PSEUDO = "FORWARD", "BACKWARD", "BIDIRECTIONAL", "TERMINATE", "PSEUDO"


def _rules(category: str, direction: str, literals: str) -> list[tuple[str, str, str, None]]:
    return [(lit.strip(), category, direction, None) for lit in literals.split("|") if lit.strip()]


CONTEXT_RULES: list[tuple[str, str, str, object]] = [
    *_rules(NEG, FWD, "no|not|without|absence of|negative for|denies|denied|deny|free of|no evidence of|no sign of|"
                      "no signs of|never|nor|neither|rather than|instead of|rules out|ruled out|lack of|lacks|lacking|"
                      "not consistent with|inconsistent with|excludes|excluding|no history of|non"),
    *_rules(NEG, BI, "absent"),
    *_rules(HEDGE, BI, "suspected|versus|vs|?"),
    *_rules(NEG, BWD, "is absent|are absent|was absent|were absent|not seen|not present|not observed|"
                      "not identified|not found|not visible|not detected|ruled out|was ruled out|has been ruled out|"
                      "excluded|was excluded|has been excluded|is unlikely|unlikely|less likely|is less likely|negative|"
                      "not the diagnosis|can be excluded|can be ruled out"),
    *_rules(HEDGE, FWD, "possible|possibly|cannot rule out|can't rule out|can not rule out|cannot exclude|can't exclude|"
                        "rule out|r/o|to rule out|to exclude|exclude|query|questionable|suspicion of|"
                        "suspicious for|suspicious of|concern for|concerning for|worrying for|may be|might be|could be|"
                        "differential includes|differential diagnosis includes|differentials include|differential|ddx|"
                        "consider|considering|alternatively|or possibly|cannot be certain"),
    *_rules(HEDGE, BWD, "cannot be ruled out|can't be ruled out|can not be ruled out|cannot be excluded|can't be excluded|"
                        "can not be excluded|not ruled out|not been ruled out|not excluded|not been excluded|should be excluded|"
                        "must be excluded|needs to be excluded|need to be excluded|needs excluding|to be excluded|"
                        "should be ruled out|must be ruled out|needs to be ruled out|is possible|remains possible|not unlikely|"
                        "is not unlikely|is a possibility|in the differential|is in the differential|should be considered|"
                        "must be considered|is suspected"),
    *_rules(PSEUDO, PSEUDO, "not absent|not without|no doubt|not only|no change|not lacking|no increase|no decrease|"
                            "gram negative|not necessarily|suspected cancer pathway|suspected cancer referral|suspected cancer"),
    *_rules(HIST, FWD, "history of|previous|prior|past history of|previously|known"),
    *_rules(FAMILY, FWD, "family history of|mother|father|sister|brother|sibling|family member"),
    *_rules(HYPO, FWD, "if|return if|in case of|watch for|risk of|at risk of|prevent|prevention of|to prevent|"
                       "should it|unless"),
    *_rules("TERMINATE", TERM, "but|however|although|though|yet|whereas|while|with|which|apart from|except|aside from|"
                               "other than|;|:|presents with|presented with|most likely|likely|diagnosis|impression|"
                               "consistent with|in keeping with|favour|favor|so|therefore|because"),
]
