"""A small synthetic news corpus written by this project (no text copied from anywhere), in the
All-the-News schema, so that `make run` and the tests can train demo models offline.

The stories are invented from templates; titles carry an outlet suffix (" - The Harbor Ledger") like the real
dataset, so the cleaning rules have work to do.

What the article model should learn from it is to *follow its headline*: every article's first sentence
restates the headline, half of them word for word ("<headline>, officials said on Monday.") and the rest as its
subject, action and object in one of several phrasings (present or past tense), so that the cheapest way to
predict it is to copy from the headline, not to recall a template. Headlines and first sentences start with
the bare subject ("Governor signs …", no "The"), so the word to copy is the first one, and the subjects are
the common actors of news (some 160: professions, institutions, events), as a headline a user writes names
one of those far more often than anything else. How far `make run`'s tiny model follows, for headlines the
corpus never had and for subjects it never names: bench/follow.json. (Corpus v3 made half the subjects
invented words, "Dravenors", for only copying to predict; a 2-layer model trained for minutes learned their
syllables instead, and put them at the start of real subjects: "Pil" + "akers" for "Pilots".)
"""

from __future__ import annotations

import csv
import hashlib
import io
import random
from dataclasses import dataclass
from pathlib import Path

# Part of `make run`'s reuse key (infra/local/run.py): bump it with any change to what this module writes,
# so that demo models trained on an older corpus are trained again.
CORPUS_VERSION = 7
DEFAULT_ROWS = 3000
DEFAULT_SEED = 7
MIN_TITLE_WORDS = 8  # prepare's default --min-title-words

OUTLETS = ["Harbor Ledger", "Valley Courier", "Northwind Post", "Evening Lantern"]
# Two words each, every word one GPT-2 token: a small model glued the pieces of one-word invented names
# into names that do not exist ("Silver" + "view").
PLACES = [
    "Harbor View",
    "Pine Hollow",
    "West Haven",
    "Mill Creek",
    "Red Hill",
    "Ash Grove",
    "Clear Lake",
    "Oak Ridge",
    "Fox River",
    "North Bend",
    "Cedar Falls",
    "Rock Springs",
    "Green Valley",
    "Elm Park",
    "the capital",
    "the northern counties",
    "the coastal region",
    "the valley",
]


@dataclass(frozen=True)
class Topic:
    """Subjects that can take these actions on these objects. An action is (present, past, rest): the
    present in the third person singular ("passes"), its past ("passed") and what follows the verb."""

    singular: tuple[str, ...]
    plural: tuple[str, ...]
    actions: tuple[tuple[str, str, str], ...]
    objects: tuple[str, ...]


TOPICS = (
    Topic(  # government
        singular=(
            "Senate",
            "Congress",
            "Parliament",
            "City council",
            "The county board",
            "The governor",
            "The mayor",
            "The cabinet",
            "The state assembly",
            "The treasury",
            "The finance ministry",
            "The prime minister",
            "The president",
            "The legislature",
            "The election commission",
        ),
        plural=(
            "State lawmakers",
            "Lawmakers",
            "Senators",
            "Ministers",
            "Regulators",
            "Officials",
            "Voters",
            "Diplomats",
            "Inspectors",
            "Auditors",
            "Councillors",
            "Delegates",
            "Governors",
            "Mayors",
        ),
        actions=(
            ("passes", "passed", ""),
            ("approves", "approved", ""),
            ("rejects", "rejected", ""),
            ("blocks", "blocked", ""),
            ("delays", "delayed", "a vote on"),
            ("unveils", "unveiled", ""),
            ("debates", "debated", ""),
            ("backs", "backed", ""),
            ("cuts", "cut", "funding for"),
            ("pledges", "pledged", "more money for"),
            ("orders", "ordered", "a review of"),
            ("weighs", "weighed", "new rules for"),
            ("scraps", "scrapped", ""),
            ("extends", "extended", ""),
            ("signs", "signed", ""),
        ),
        objects=(
            "the budget bill",
            "a sweeping tax plan",
            "the housing bill",
            "a spending package",
            "the new election map",
            "public libraries",
            "rural broadband service",
            "the old river bridge",
            "summer jobs for teenagers",
            "school lunch programs",
            "affordable housing projects",
            "the regional airport",
            "community health clinics",
            "night bus routes",
            "coastal flood defenses",
            "the pension reform",
            "a ban on plastic bags",
            "the minimum wage increase",
            "the immigration bill",
            "a new climate law",
            "the gun safety bill",
            "the trade agreement",
        ),
    ),
    Topic(  # courts and police
        singular=(
            "A federal judge",
            "The supreme court",
            "The appeals court",
            "The attorney general",
            "The jury",
            "The sheriff",
            "The coroner",
            "The prison",
        ),
        plural=(
            "Prosecutors",
            "Police",
            "Detectives",
            "Investigators",
            "Defense lawyers",
            "Judges",
            "Sheriffs",
            "Guards",
            "Officers",
            "Witnesses",
        ),
        actions=(
            ("blocks", "blocked", ""),
            ("upholds", "upheld", ""),
            ("strikes", "struck", "down"),
            ("charges", "charged", ""),
            ("investigates", "investigated", ""),
            ("arrests", "arrested", ""),
            ("clears", "cleared", ""),
            ("fines", "fined", ""),
            ("sues", "sued", ""),
            ("questions", "questioned", ""),
        ),
        objects=(
            "the voting law",
            "two suspects",
            "a former mayor",
            "the mining company",
            "the new ban",
            "a local contractor",
            "the bank's chief executive",
            "the state's abortion law",
            "three police officers",
            "the tobacco maker",
            "a hospital chain",
            "the social media company",
        ),
    ),
    Topic(  # business
        singular=(
            "The central bank",
            "The airline",
            "The automaker",
            "The retailer",
            "The chipmaker",
            "The startup",
            "The brewery",
            "The railway",
            "The bakery",
            "The insurer",
            "The mine",
            "The port",
            "The factory",
        ),
        plural=(
            "Investors",
            "Shareholders",
            "Banks",
            "Carmakers",
            "Oil producers",
            "Retailers",
            "Airlines",
            "Pilots",
            "Miners",
            "Bakers",
            "Brewers",
            "Truckers",
            "Dockworkers",
            "Shipbuilders",
            "Economists",
            "Traders",
            "Landlords",
        ),
        actions=(
            ("raises", "raised", ""),
            ("cuts", "cut", ""),
            ("reports", "reported", ""),
            ("announces", "announced", ""),
            ("recalls", "recalled", ""),
            ("launches", "launched", ""),
            ("buys", "bought", ""),
            ("sells", "sold", ""),
            ("closes", "closed", ""),
            ("hires", "hired", ""),
            ("freezes", "froze", ""),
            ("doubles", "doubled", ""),
        ),
        objects=(
            "interest rates",
            "ticket prices",
            "thousands of jobs",
            "record profits",
            "a new electric truck",
            "two regional factories",
            "its flagship store",
            "dozens of flights",
            "a rival software maker",
            "its stake in the mine",
            "quarterly earnings",
            "a new smartphone",
            "fuel prices",
            "the merger plan",
        ),
    ),
    Topic(  # science and health
        singular=(
            "The health ministry",
            "The hospital",
            "The university",
            "The space agency",
            "The lab",
            "The observatory",
            "The clinic",
            "The zoo",
        ),
        plural=(
            "Scientists",
            "Researchers",
            "Doctors",
            "Nurses",
            "Astronomers",
            "Engineers",
            "Biologists",
            "Surgeons",
            "Pharmacists",
            "Astronauts",
            "Chemists",
            "Geologists",
            "Archaeologists",
            "Zookeepers",
            "Veterinarians",
            "Paramedics",
        ),
        actions=(
            ("discovers", "discovered", ""),
            ("warns", "warned", "of"),
            ("tests", "tested", ""),
            ("studies", "studied", ""),
            ("develops", "developed", ""),
            ("reports", "reported", ""),
            ("tracks", "tracked", ""),
            ("maps", "mapped", ""),
            ("finds", "found", ""),
        ),
        objects=(
            "a new species of frog",
            "a distant planet",
            "a cheaper malaria drug",
            "a new flu vaccine",
            "rising cases of measles",
            "the melting glacier",
            "ancient bones",
            "a link between sleep and memory",
            "a faster battery",
            "toxic algae in the lake",
            "the spread of the virus",
            "a rare comet",
        ),
    ),
    Topic(  # weather and disasters: plural and singular subjects alike take these actions
        singular=(
            "A storm",
            "The wildfire",
            "The hurricane",
            "A heat wave",
            "The blizzard",
            "An earthquake",
            "A volcano",
            "The drought",
            "A tornado",
            "The flooding",
            "A landslide",
            "The typhoon",
        ),
        plural=("Floods", "Storms", "Wildfires", "Tornadoes", "Heavy rains", "Mudslides", "Firefighters", "Rescuers"),
        actions=(
            ("knocks", "knocked", "out power to"),
            ("forces", "forced", "the evacuation of"),
            ("destroys", "destroyed", ""),
            ("damages", "damaged", ""),
            ("closes", "closed", ""),
            ("threatens", "threatened", ""),
            ("sweeps", "swept", "through"),
            ("cuts", "cut", "off"),
        ),
        objects=(
            "thousands of homes",
            "coastal towns",
            "the main highway",
            "farms in the valley",
            "schools across the region",
            "the old harbor",
            "two mountain villages",
            "the city's water supply",
            "hundreds of businesses",
            "the rail line",
        ),
    ),
    Topic(  # people and society
        singular=(
            "The teachers union",
            "The tenants association",
            "A neighborhood group",
            "The church",
            "The library",
            "The school board",
        ),
        plural=(
            "Teachers",
            "Students",
            "Workers",
            "Protesters",
            "Residents",
            "Parents",
            "Farmers",
            "Union leaders",
            "Tenants",
            "Commuters",
            "Volunteers",
            "Veterans",
            "Fishermen",
            "Truck drivers",
            "Librarians",
            "Shopkeepers",
            "Retirees",
            "Cyclists",
            "Social workers",
        ),
        actions=(
            ("protests", "protested", ""),
            ("rallies", "rallied", "against"),
            ("demands", "demanded", ""),
            ("celebrates", "celebrated", ""),
            ("marches", "marched", "for"),
            ("opposes", "opposed", ""),
            ("welcomes", "welcomed", ""),
            ("strikes", "went on strike", "over"),
            ("fights", "fought", ""),
        ),
        objects=(
            "higher pay",
            "new parking rules",
            "school closures",
            "rent increases",
            "bus fare hikes",
            "the downtown bike network",
            "the harbor ferry line",
            "cuts to the fishing quota",
            "the new mine",
            "longer opening hours",
            "the farmers market",
            "storm drain repairs",
        ),
    ),
    Topic(  # sport and culture
        singular=(
            "The team",
            "The coach",
            "The orchestra",
            "The museum",
            "The festival",
            "The league",
            "The club",
            "The theater",
            "The stadium",
            "The gallery",
        ),
        plural=("Fans", "Players", "Organizers", "Artists", "Museum curators", "Musicians", "Athletes", "Referees"),
        actions=(
            ("wins", "won", ""),
            ("loses", "lost", ""),
            ("signs", "signed", ""),
            ("cancels", "canceled", ""),
            ("announces", "announced", ""),
            ("opens", "opened", ""),
            ("postpones", "postponed", ""),
            ("honors", "honored", ""),
        ),
        objects=(
            "the championship final",
            "a star striker",
            "the summer concert series",
            "a new exhibit of old maps",
            "the season opener",
            "a young goalkeeper",
            "the film festival",
            "the city orchestra",
            "the marathon",
            "a retired captain",
        ),
    ),
)
TAILS = [
    "after a long debate",
    "despite loud protests",
    "as winter approaches",
    "amid budget worries",
    "in a close vote",
    "after months of delay",
    "ahead of the election",
    "following a heated meeting",
    "for the first time in years",
    "as costs climb",
    "after a late night session",
    "amid growing anger",
]
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
# First sentences: each starts with the headline's subject, as the headline writes it (the first thing to copy:
# a small model learns that far sooner than finding the subject after a date or a place), then restates its
# verb (present or past) and object in one of several phrasings.
OPENINGS = [
    "{Subject} {past} {object} on {day}, a decision that {reaction}.",
    "{Subject} {past} {object} in {place} on {day}, according to a statement.",
    "{Subject} {past} {object} {tail}, officials said on {day}.",
    "{Subject} on {day} {past} {object}, in a move that {reaction}.",
    "{Subject} {present} {object}, a step that {reaction}.",
    "{Subject} {present} {object} {tail}, local reports said on {day}.",
    "{Subject} {past} {object} late on {day}, ending weeks of uncertainty.",
]
# The headline word for word, as wire copy often opens: long runs of tokens to copy, names and places included,
# which is how a small model learns to copy at all (rather than to recall a subject it knows): most of the
# subjects' first words are split by GPT-2 into several pieces, and only copying carries the later ones.
VERBATIM_OPENINGS = [
    "{headline}, officials said on {day}.",
    "{headline}, according to a statement released on {day}.",
    "{headline}, local reports said on {day}.",
]
VERBATIM_SHARE = 0.5
# Middle sentences carry most of an article's words. Each has slots (a person, a role, a number, a place, a
# quote) filled from lists, so that a sentence's words are well predicted once it has begun while its fillers
# are free choices: that is where a sampled article varies, and where the watermark can put its mark (a text
# whose every token is certain cannot carry one).
MIDDLES = [
    "Supporters said the change would help about {number} residents, while critics called it rushed.",
    "The measure is expected to cost roughly {number} thousand dollars over the next {years} years.",
    "Officials said a public hearing would be held in {place} before the end of {month}.",
    "A spokesperson for the {body} said the details were still being worked out.",
    "The plan had stalled twice before, most recently in {month}.",
    "Local business owners in {place} said they were cautiously hopeful about the outcome.",
    "Nobody from the {body} was available for comment late on {day}.",
    "{first} {last}, a {role} in {place}, said the decision {reaction}.",
    '"{quote}," said {first} {last}, a {role} who has lived in {place} for {years} years.',
    '{first} {last}, a {role}, said: "{quote}."',
    "About {number} people attended a meeting at the {venue} in {place} on {day}.",
    "A survey by the {org} found that {percent} percent of residents supported the plan.",
    "A report by the {org} in {month} found that demand had grown for {years} years in a row.",
    "The {body} will meet again on {day} to discuss {concern}.",
    "Critics, led by {first} {last}, a {role}, warned that {concern} had been ignored.",
    "In {place}, {first} {last} said the news {reaction}.",
    "The {org} said it would publish a full review in {month}.",
    "Similar plans were tried in {place} and {place2}, with mixed results.",
    "Turnout at the {venue} was the highest in {years} years, organizers said.",
    "The {body} said the first changes could take effect as early as {month}.",
]
CLOSINGS = [
    "A final decision is expected in the coming weeks.",
    "Further meetings are scheduled for {month}.",
    "The debate is likely to continue well into next year.",
    "Opponents said they would keep pressing for changes.",
    "The {body} is expected to vote on the matter in {month}.",
    "{first} {last} said residents would be watching closely.",
]
REACTIONS = [
    "surprised many residents",
    "drew praise from supporters",
    "angered some longtime critics",
    "was widely expected",
    "caught many by surprise",
    "came far too late",
    "was a relief for many families",
]
FIRST_NAMES = [
    "Maria",
    "James",
    "Aisha",
    "Daniel",
    "Sofia",
    "Thomas",
    "Grace",
    "Samuel",
    "Elena",
    "David",
    "Hannah",
    "Oliver",
    "Priya",
    "Michael",
    "Laura",
    "Peter",
    "Nadia",
    "Robert",
    "Emily",
    "Carlos",
    "Julia",
    "Henry",
    "Fatima",
    "George",
    "Rachel",
    "Martin",
    "Alice",
    "Victor",
    "Helen",
    "Omar",
]
LAST_NAMES = [
    "Alvarez",
    "Brooks",
    "Chen",
    "Dawson",
    "Ellis",
    "Fischer",
    "Garcia",
    "Hughes",
    "Ibrahim",
    "Jensen",
    "Kowalski",
    "Lopez",
    "Murphy",
    "Novak",
    "Okafor",
    "Patel",
    "Quinn",
    "Rossi",
    "Schmidt",
    "Turner",
    "Walsh",
    "Young",
    "Bennett",
    "Carter",
    "Foster",
    "Harper",
    "Keller",
    "Morgan",
    "Reyes",
    "Shaw",
]
ROLES = [
    "retired teacher",
    "local shop owner",
    "city planner",
    "nurse",
    "union organizer",
    "farmer",
    "university economist",
    "bus driver",
    "council member",
    "longtime resident",
    "small business owner",
    "community organizer",
    "high school principal",
    "restaurant owner",
    "former police officer",
    "graduate student",
    "parent of two",
    "retired engineer",
    "pastor",
    "lawyer",
]
QUOTES = [
    "This is a good day for the whole community",
    "We were never asked what we thought",
    "It is a start, but it is not enough",
    "People here have waited a long time for this",
    "Nobody can say we did not warn them",
    "We will be back next month with more people",
    "This will change how we live and work",
    "I have never seen anything like it",
    "The numbers simply do not add up",
    "Our families deserve better than this",
    "We are ready to work with anyone on this",
    "It came as a complete surprise to me",
]
BODIES = ["city council", "county board", "state agency", "ministry", "commission", "school board", "company"]
ORGS = [
    "state statistics office",
    "regional planning agency",
    "university research center",
    "chamber of commerce",
    "local newspaper",
    "independent audit office",
    "national bureau of statistics",
    "policy institute",
]
VENUES = ["town hall", "public library", "community center", "high school gym", "church hall", "city museum"]
CONCERNS = [
    "the cost to taxpayers",
    "traffic on the main road",
    "the effect on small businesses",
    "the safety of children",
    "rising rents",
    "the timeline for the work",
    "water quality in the river",
    "noise from the site",
]
MONTHS = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
]
HEADER = ["", "id", "title", "publication", "author", "date", "year", "month", "url", "content"]


def plural_verb(present: str) -> str:
    """'passes' -> 'pass', 'rallies' -> 'rally', 'approves' -> 'approve'."""
    if present.endswith("ies"):
        return present[:-3] + "y"
    if present.endswith(("sses", "shes", "ches", "xes", "zzes")):
        return present[:-2]
    return present[:-1]


def subject_of(rng: random.Random, topic: Topic) -> tuple[str, bool]:
    """A subject for this topic and whether it is singular."""
    if rng.random() < 0.5:
        return rng.choice(topic.singular), True
    return rng.choice(topic.plural), False


def phrase(*parts: str) -> str:
    return " ".join(p for p in parts if p)


def fillers(rng: random.Random, place: str) -> dict:
    """A sentence's own free choices: drawn anew for each sentence, so that every one of them varies."""
    return {
        "place2": rng.choice([p for p in PLACES if p != place]),
        "day": rng.choice(DAYS),
        "month": rng.choice(MONTHS),
        "reaction": rng.choice(REACTIONS),
        "number": f"{rng.randint(2, 90) * 100:,}",
        "years": rng.randint(2, 30),
        "percent": rng.randint(12, 88),
        "first": rng.choice(FIRST_NAMES),
        "last": rng.choice(LAST_NAMES),
        "role": rng.choice(ROLES),
        "quote": rng.choice(QUOTES),
        "body": rng.choice(BODIES),
        "org": rng.choice(ORGS),
        "venue": rng.choice(VENUES),
        "concern": rng.choice(CONCERNS),
    }


def story(rng: random.Random) -> tuple[str, str, str]:
    topic = rng.choice(TOPICS)
    subject, singular = subject_of(rng, topic)
    present, past, rest = rng.choice(topic.actions)
    if not singular:
        present = plural_verb(present)
    obj, place, tail = rng.choice(topic.objects), rng.choice(PLACES), rng.choice(TAILS)
    verb_phrase = phrase(present, rest)
    # Headlines drop a leading article ("Storm knocks out power …", "Governor signs …"), as real ones do, and
    # the first sentence starts with the headline's own first word: the one thing a small model copies well.
    bare = subject.partition(" ")[2] if subject.split()[0] in ("A", "An", "The") else subject
    bare = bare[0].upper() + bare[1:]
    where = rng.choice(["in", "near", "across"]) + " " + place
    form = rng.randrange(3)
    if form == 0:
        title = phrase(bare, verb_phrase, obj, tail)
    elif form == 1:
        title = phrase(bare, where, verb_phrase, obj)
    else:
        title = phrase(bare, verb_phrase, obj, where, tail if rng.random() < 0.5 else "")
    if len(title.split()) < MIN_TITLE_WORDS and tail not in title:  # `prepare` drops shorter headlines
        title = phrase(title, tail)
    values = {
        "headline": title,
        "Subject": bare,
        "present": verb_phrase,
        "past": phrase(past, rest),
        "object": obj,
        "place": place,
        "tail": tail,
        "day": rng.choice(DAYS),
        "reaction": rng.choice(REACTIONS),
    }
    opening = rng.choice(VERBATIM_OPENINGS if rng.random() < VERBATIM_SHARE else OPENINGS)
    sentences = [opening, *rng.sample(MIDDLES, k=rng.randint(4, 5)), rng.choice(CLOSINGS)]
    content = " ".join(s.format(**{**values, **fillers(rng, place)}) for s in sentences)
    return title, rng.choice(OUTLETS), content


def demo_rows(rows: int = DEFAULT_ROWS, seed: int = DEFAULT_SEED):
    """The corpus' CSV rows (All-the-News columns), the header first."""
    rng = random.Random(seed)
    yield HEADER
    for i in range(rows):
        title, outlet, content = story(rng)
        # Like the real dataset, titles carry the outlet's name; some as a prefix.
        title = f"{title} - The {outlet}" if i % 5 else f"{outlet}: {title}"
        yield [
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


def fingerprint(rows: int = DEFAULT_ROWS, seed: int = DEFAULT_SEED) -> str:
    """A digest of the corpus this code writes: it changes whenever the text does (and with CORPUS_VERSION)."""
    buffer = io.StringIO()
    csv.writer(buffer).writerows(demo_rows(rows, seed))
    return hashlib.sha256(f"v{CORPUS_VERSION}\n{buffer.getvalue()}".encode()).hexdigest()


def write_demo_csv(path: Path, rows: int = DEFAULT_ROWS, seed: int = DEFAULT_SEED) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows(demo_rows(rows, seed))
    return path
