"""A small synthetic news corpus written by this project (no text copied from anywhere), in the
All-the-News schema, so that `make run` and the tests can train demo models offline.

The stories are invented from templates about invented places; titles carry an outlet suffix
(" - The Harbor Ledger") like the real dataset, so the cleaning rules have work to do.
"""

from __future__ import annotations

import csv
import random
from pathlib import Path

OUTLETS = ["Harbor Ledger", "Valley Courier", "Northwind Post", "Evening Lantern"]
PLACES = ["Harborview", "Pine Hollow", "Westmere", "Marlow Bay", "Eastbrook", "Stonefield", "Larkspur", "Redwater"]
SUBJECTS = [
    "City council",
    "The county board",
    "State lawmakers",
    "A federal judge",
    "Transit officials",
    "Local farmers",
    "School board members",
    "Health officials",
    "The mayor",
    "Researchers",
    "Union leaders",
    "Hospital administrators",
    "Volunteer firefighters",
    "The water authority",
    "Small business owners",
    "Parents",
    "The governor",
    "Housing advocates",
    "Police officials",
    "Museum curators",
]
SINGULAR = {"City council", "The county board", "A federal judge", "The mayor", "The water authority", "The governor"}
ACTIONS = [
    "approves plan to expand",
    "rejects proposal to cut",
    "opens an inquiry into",
    "warns of rising costs for",
    "unveils new budget for",
    "delays vote on",
    "pledges more money for",
    "questions the future of",
    "calls for review of",
    "celebrates record year for",
    "sues over changes to",
    "weighs new rules for",
]
OBJECTS = [
    "public libraries",
    "the downtown bike network",
    "rural broadband service",
    "the old river bridge",
    "summer jobs for teenagers",
    "wildfire prevention crews",
    "the harbor ferry line",
    "school lunch programs",
    "affordable housing projects",
    "the regional airport",
    "community health clinics",
    "the farmers market",
    "storm drain repairs",
    "night bus routes",
    "the city orchestra",
    "coastal flood defenses",
]
TAILS = [
    "after a long debate",
    "despite loud protests",
    "as winter approaches",
    "amid budget worries",
    "in a close vote",
    "after months of delay",
    "ahead of the election",
    "following a heated meeting",
]
OPENINGS = [
    "{subject} in {place} on {day} {action_past} {object}, a decision that {reaction}.",
    "In {place}, {subject_lower} {action_past} {object} on {day}, ending weeks of uncertainty.",
    "{subject} {action_past} {object} on {day}, according to a statement released in {place}.",
]
MIDDLES = [
    "Supporters said the change would help about {number} residents, while critics called it rushed.",
    "The measure is expected to cost roughly {number} thousand dollars over the next two years.",
    "Officials said a public hearing would be held before the end of the month.",
    "Several residents spoke at the meeting, some in favor and others strongly opposed.",
    "A spokesperson said the details were still being worked out with neighboring towns.",
    "The plan had stalled twice before, most recently last spring.",
    "Local business owners said they were cautiously hopeful about the outcome.",
    "An independent review found that demand had grown steadily for several years.",
]
CLOSINGS = [
    "A final decision is expected in the coming weeks.",
    "Further meetings are scheduled for next month.",
    "The debate is likely to continue well into next year.",
    "Opponents said they would keep pressing for changes.",
]
REACTIONS = [
    "surprised many residents",
    "drew praise from neighbors",
    "angered some longtime critics",
    "was widely expected",
]
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday"]


def _past(action: str) -> str:
    verb, _, rest = action.partition(" ")
    irregular = {
        "approves": "approved",
        "rejects": "rejected",
        "opens": "opened",
        "warns": "warned",
        "unveils": "unveiled",
        "delays": "delayed",
        "pledges": "pledged",
        "questions": "questioned",
        "calls": "called",
        "celebrates": "celebrated",
        "sues": "sued",
        "weighs": "weighed",
    }
    return f"{irregular.get(verb, verb)} {rest}".strip()


def story(rng: random.Random) -> tuple[str, str, str]:
    subject, action, obj, place = rng.choice(SUBJECTS), rng.choice(ACTIONS), rng.choice(OBJECTS), rng.choice(PLACES)
    outlet = rng.choice(OUTLETS)
    if subject not in SINGULAR:
        action = action.replace("s ", " ", 1)  # "approves plan" -> "approve plan"
    title = f"{subject} in {place} {action} {obj} {rng.choice(TAILS)}"
    values = {
        "subject": f"{subject}",
        "subject_lower": subject[0].lower() + subject[1:],
        "place": place,
        "object": obj,
        "day": rng.choice(DAYS),
        "action_past": _past(action).replace(" plan to", " a plan to"),
        "reaction": rng.choice(REACTIONS),
        "number": rng.randint(2, 90) * 100,
    }
    sentences = [rng.choice(OPENINGS), *rng.sample(MIDDLES, k=rng.randint(2, 4)), rng.choice(CLOSINGS)]
    content = " ".join(s.format(**values) for s in sentences)
    return title, outlet, content


def write_demo_csv(path: Path, rows: int = 600, seed: int = 7) -> Path:
    rng = random.Random(seed)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["", "id", "title", "publication", "author", "date", "year", "month", "url", "content"])
        for i in range(rows):
            title, outlet, content = story(rng)
            # Like the real dataset, titles carry the outlet's name; some as a prefix.
            title = f"{title} - The {outlet}" if i % 5 else f"{outlet}: {title}"
            writer.writerow(
                [
                    i,
                    100000 + i,
                    title,
                    outlet,
                    "Newsgen Demo Desk",
                    "2026-01-01",
                    2026,
                    1,
                    f"https://example.invalid/demo/{i}",
                    content,
                ]
            )
    return path
