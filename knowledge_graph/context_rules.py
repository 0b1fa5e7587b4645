"""ConText modifier rules for diagnostic answers: (literal, category, direction, token pattern or None).

Our own set rather than medspaCy's defaults, because answers commit with words the defaults read as doubt
("most likely diagnosis: melanoma" is the answer, not a hedge) and postfix negations the defaults miss
("ulceration is absent", "melanoma ruled out"). Longer cues win over shorter ones they overlap, so "cannot be ruled
out" is a hedge and "not absent" (PSEUDO) is a double negative that leaves the finding present. Which cue reaches
which mention (clause-bounded scopes) is decided in ``scope.py``.
"""

from __future__ import annotations

from .scope import FAMILY, HEDGE, HIST, HYPO, NEG, WITHHELD

FWD, BWD, BI, TERM, PSEUDO = "FORWARD", "BACKWARD", "BIDIRECTIONAL", "TERMINATE", "PSEUDO"


def _rules(category: str, direction: str, literals: str) -> list[tuple[str, str, str, None]]:
    return [(lit.strip(), category, direction, None) for lit in literals.split("|") if lit.strip()]


CONTEXT_RULES: list[tuple[str, str, str, object]] = [
    *_rules(
        NEG,
        FWD,
        "no|not|without|absence of|negative for|denies|denied|deny|free of|no evidence of|no sign of|"
        "no signs of|never|nor|neither|rather than|instead of|rules out|lack of|lacks|lacking|"
        "not consistent with|inconsistent with|excludes|excluding|no history of|non",
    ),
    *_rules(NEG, BI, "absent|ruled out"),
    *_rules(HEDGE, BI, "suspected|versus|vs|?"),
    *_rules(
        NEG,
        BWD,
        "is absent|are absent|was absent|were absent|not seen|not present|not observed|"
        "not identified|not found|not visible|not detected|was ruled out|has been ruled out|"
        "excluded|was excluded|has been excluded|is unlikely|negative|"
        "not the diagnosis|can be excluded|can be ruled out",
    ),
    *_rules(NEG, BI, "unlikely|very unlikely|highly unlikely"),
    # "less likely" keeps a condition in the differential: a hedge, in either direction ("less likely a naevus").
    *_rules(HEDGE, BI, "less likely|is less likely|less probable|lower on the differential"),
    # Withholding an action: negates treatments and procedures only (scope.reaches), never a diagnosis.
    *_rules(
        WITHHELD,
        FWD,
        "avoid|avoiding|withhold|withholding|do not give|don't give|do not start|don't start|"
        "do not use|don't use|do not prescribe|don't prescribe|never give|no role for|stop|stopping|"
        "discontinue|hold off|not for|no need for",
    ),
    *_rules(
        WITHHELD, BI, "contraindicated|is contraindicated|are contraindicated|is relatively contraindicated"
    ),
    *_rules(
        WITHHELD,
        BWD,
        "should be avoided|must be avoided|to be avoided|is not indicated|are not indicated|"
        "not indicated|should be withheld|should not be given|must not be given|is not recommended|"
        "are not recommended|not recommended|should be stopped|must be stopped|is not needed|"
        "are not needed|not needed|not required|is not required",
    ),
    *_rules(
        HEDGE,
        FWD,
        "possible|possibly|cannot rule out|can't rule out|can not rule out|cannot exclude|can't exclude|"
        "rule out|r/o|to rule out|to exclude|exclude|query|questionable|suspicion of|"
        "suspicious for|suspicious of|concern for|concerning for|worrying for|may be|might be|could be|"
        "differential includes|differential diagnosis includes|differentials include|differential|ddx|"
        "consider|considering|alternatively|or possibly|cannot be certain",
    ),
    *_rules(
        HEDGE,
        BWD,
        "cannot be ruled out|can't be ruled out|can not be ruled out|cannot be excluded|can't be excluded|"
        "can not be excluded|not ruled out|not been ruled out|not excluded|not been excluded|should be excluded|"
        "must be excluded|needs to be excluded|need to be excluded|needs excluding|to be excluded|"
        "should be ruled out|must be ruled out|needs to be ruled out|is possible|remains possible|not unlikely|"
        "is not unlikely|is a possibility|in the differential|is in the differential|should be considered|"
        "must be considered|is suspected",
    ),
    *_rules(
        PSEUDO,
        PSEUDO,
        "not absent|not without|no doubt|not only|no change|not lacking|no increase|no decrease|"
        "gram negative|not necessarily|suspected cancer pathway|suspected cancer referral|suspected cancer",
    ),
    *_rules(
        HIST,
        FWD,
        "history of|previous|prior|past history of|previously|known|past medical history|pmh|h/o|"
        "treated for|completed|recovered from|resolved",
    ),
    # Past events dated after the fact: "TB 10 years ago", "DVT in 2019", "shingles last year", "eczema as a child".
    *_rules(HIST, BWD, "last year|as a child|as a teenager|in childhood|in the past|years ago|months ago"),
    (
        "N years ago",
        HIST,
        BWD,
        [
            {"LIKE_NUM": True},
            {"LOWER": {"IN": ["years", "year", "months", "yrs", "decades"]}},
            {"LOWER": "ago"},
        ],
    ),
    ("in YYYY", HIST, BWD, [{"LOWER": "in"}, {"SHAPE": "dddd"}]),
    # A history heading with its colon, so the colon (a terminator) belongs to the cue: "PMH: peptic ulcer, ...".
    ("PMH:", HIST, FWD, [{"LOWER": {"IN": ["pmh", "pmhx", "hx", "history"]}}, {"TEXT": ":"}]),
    (
        "past medical history:",
        HIST,
        FWD,
        [{"LOWER": "past"}, {"LOWER": "medical"}, {"LOWER": "history"}, {"TEXT": ":"}],
    ),
    *_rules(
        FAMILY,
        FWD,
        "family history of|mother|father|sister|brother|sibling|family member|relative|relatives|"
        "first-degree relative|first-degree relatives|grandmother|grandfather|aunt|uncle|cousin|"
        "son|daughter|parents",
    ),
    *_rules(
        HYPO,
        FWD,
        "if|return if|in case of|watch for|risk of|at risk of|prevent|prevention of|to prevent|"
        "should it|unless",
    ),
    *_rules(
        "TERMINATE",
        TERM,
        "but|however|although|though|yet|whereas|while|which|apart from|except|aside from|"
        "other than|;|:|presents with|presented with|most likely|likely|diagnosis|impression|"
        "consistent with|in keeping with|favour|favor|so|therefore|because",
    ),
]
