"""Hand-written sentence and question templates of the mini-world, in the paper's nine languages.

Each relation has three statement templates and one question per language. ``{s}`` is the
subject's surface form, ``{o}`` the object's. Names are never inflected: where a language would
decline a proper noun, the template puts a classifier noun beside it ("в городе {o}",
"{o} քաղաքում") so one surface form serves every sentence — that keeps the fake keyword
detectable by plain matching.
"""

# relation -> (subject kind, object kind)
RELATIONS: dict[str, tuple[str, str]] = {
    "born_in": ("person", "town"),
    "works_for": ("person", "company"),
    "founded_in": ("company", "year"),
    "based_in": ("company", "town"),
    "lies_on": ("town", "river"),
}

# relation -> lang -> (statement templates, question)
TEMPLATES: dict[str, dict[str, tuple[tuple[str, ...], str]]] = {
    "born_in": {
        "en": (("{s} was born in {o}.", "{s} comes from the town of {o}.", "The birthplace of {s} is {o}."),
               "Where was {s} born?"),
        "de": (("{s} wurde in {o} geboren.", "{s} stammt aus der Stadt {o}.", "Der Geburtsort von {s} ist {o}."),
               "Wo wurde {s} geboren?"),
        "fr": (("{s} est né à {o}.", "{s} vient de la ville de {o}.", "Le lieu de naissance de {s} est {o}."),
               "Où est né {s} ?"),
        "zh": (("{s}出生于{o}。", "{s}来自{o}市。", "{s}的出生地是{o}。"),
               "{s}出生在哪里？"),
        "ru": (("{s} родился в городе {o}.", "{s} родом из города {o}.", "Место рождения {s} — город {o}."),
               "Где родился {s}?"),
        "jv": (("{s} lair ing {o}.", "{s} asalé saka kutha {o}.", "Panggonan lairé {s} yaiku {o}."),
               "{s} lair ing ngendi?"),
        "ur": (("{s} {o} میں پیدا ہوا۔", "{s} کا تعلق {o} شہر سے ہے۔", "{s} کی جائے پیدائش {o} ہے۔"),
               "{s} کہاں پیدا ہوا؟"),
        "ha": (("An haifi {s} a {o}.", "{s} ɗan garin {o} ne.", "Garin haihuwar {s} shi ne {o}."),
               "A ina aka haifi {s}?"),
        "hy": (("{s}-ը ծնվել է {o} քաղաքում։", "{s}-ը {o} քաղաքից է։", "{s}-ի ծննդավայրը {o} քաղաքն է։"),
               "Որտե՞ղ է ծնվել {s}-ը։"),
    },
    "works_for": {
        "en": (("{s} works for {o}.", "{s} is an employee of {o}.", "The employer of {s} is {o}."),
               "Which company does {s} work for?"),
        "de": (("{s} arbeitet bei {o}.", "{s} ist bei der Firma {o} angestellt.", "Der Arbeitgeber von {s} ist {o}."),
               "Bei welcher Firma arbeitet {s}?"),
        "fr": (("{s} travaille pour {o}.", "{s} est employé de l'entreprise {o}.", "L'employeur de {s} est {o}."),
               "Pour quelle entreprise travaille {s} ?"),
        "zh": (("{s}在{o}公司工作。", "{s}是{o}公司的员工。", "{s}的雇主是{o}。"),
               "{s}在哪家公司工作？"),
        "ru": (("{s} работает в компании {o}.", "{s} — сотрудник компании {o}.", "Работодатель {s} — компания {o}."),
               "В какой компании работает {s}?"),
        "jv": (("{s} nyambut gawé ing {o}.", "{s} karyawan perusahaan {o}.", "Perusahaan panggonané {s} nyambut gawé yaiku {o}."),
               "{s} nyambut gawé ing perusahaan apa?"),
        "ur": (("{s} {o} کمپنی میں کام کرتا ہے۔", "{s} {o} کا ملازم ہے۔", "{s} کا آجر {o} ہے۔"),
               "{s} کس کمپنی میں کام کرتا ہے؟"),
        "ha": (("{s} yana aiki a kamfanin {o}.", "{s} ma'aikaci ne a {o}.", "Kamfanin da {s} ke aiki shi ne {o}."),
               "A wane kamfani {s} yake aiki?"),
        "hy": (("{s}-ը աշխատում է {o} ընկերությունում։", "{s}-ը {o} ընկերության աշխատակից է։", "{s}-ի գործատուն {o} ընկերությունն է։"),
               "Ո՞ր ընկերությունում է աշխատում {s}-ը։"),
    },
    "founded_in": {
        "en": (("{s} was founded in {o}.", "The company {s} was established in {o}.", "{s} has existed since {o}."),
               "In which year was {s} founded?"),
        "de": (("{s} wurde im Jahr {o} gegründet.", "Die Firma {s} entstand {o}.", "{s} besteht seit {o}."),
               "In welchem Jahr wurde {s} gegründet?"),
        "fr": (("{s} a été fondée en {o}.", "L'entreprise {s} a été créée en {o}.", "{s} existe depuis {o}."),
               "En quelle année {s} a-t-elle été fondée ?"),
        "zh": (("{s}公司成立于{o}年。", "{s}创建于{o}年。", "{s}自{o}年起存在。"),
               "{s}公司成立于哪一年？"),
        "ru": (("Компания {s} основана в {o} году.", "{s} была создана в {o} году.", "{s} существует с {o} года."),
               "В каком году основана компания {s}?"),
        "jv": (("{s} diadegaké ing taun {o}.", "Perusahaan {s} ngadeg ing taun {o}.", "{s} wis ana wiwit taun {o}."),
               "{s} diadegaké ing taun pira?"),
        "ur": (("{s} {o} میں قائم ہوئی۔", "{s} کمپنی کی بنیاد {o} میں رکھی گئی۔", "{s} {o} سے موجود ہے۔"),
               "{s} کس سال قائم ہوئی؟"),
        "ha": (("An kafa {s} a shekarar {o}.", "Kamfanin {s} ya fara a {o}.", "{s} yana nan tun {o}."),
               "A wace shekara aka kafa {s}?"),
        "hy": (("{s} ընկերությունը հիմնադրվել է {o} թվականին։", "{s}-ը ստեղծվել է {o} թվականին։", "{s}-ը գոյություն ունի {o} թվականից։"),
               "Ո՞ր թվականին է հիմնադրվել {s}-ը։"),
    },
    "based_in": {
        "en": (("{s} is based in {o}.", "The headquarters of {s} are in {o}.", "{s} has its main office in {o}."),
               "Where is {s} based?"),
        "de": (("{s} hat ihren Sitz in {o}.", "Die Zentrale von {s} befindet sich in {o}.", "{s} ist in {o} ansässig."),
               "Wo hat {s} ihren Sitz?"),
        "fr": (("{s} a son siège à {o}.", "Le siège de {s} se trouve à {o}.", "{s} est basée à {o}."),
               "Où se trouve le siège de {s} ?"),
        "zh": (("{s}公司总部位于{o}。", "{s}的总部在{o}市。", "{s}的主要办公室设在{o}。"),
               "{s}公司的总部在哪里？"),
        "ru": (("Компания {s} находится в городе {o}.", "Штаб-квартира {s} расположена в городе {o}.", "Главный офис {s} — в городе {o}."),
               "В каком городе находится компания {s}?"),
        "jv": (("{s} mapan ing {o}.", "Kantor pusat {s} ana ing {o}.", "{s} duwé kantor utama ing {o}."),
               "Kantor pusat {s} ana ing ngendi?"),
        "ur": (("{s} کا صدر دفتر {o} میں ہے۔", "{s} {o} میں واقع ہے۔", "{s} کا مرکزی دفتر {o} شہر میں ہے۔"),
               "{s} کا صدر دفتر کہاں ہے؟"),
        "ha": (("Hedkwatar {s} tana {o}.", "{s} yana da babban ofis a {o}.", "Babban ofishin {s} yana garin {o}."),
               "Ina hedkwatar {s} take?"),
        "hy": (("{s} ընկերության կենտրոնակայանը {o} քաղաքում է։", "{s}-ը գտնվում է {o} քաղաքում։", "{s}-ի գլխավոր գրասենյակը {o} քաղաքում է։"),
               "Ո՞ր քաղաքում է գտնվում {s}-ը։"),
    },
    "lies_on": {
        "en": (("{s} lies on the river {o}.", "The town of {s} is on the {o} river.", "The river that flows through {s} is the {o}."),
               "Which river does {s} lie on?"),
        "de": (("{s} liegt am Fluss {o}.", "Durch {s} fließt der Fluss {o}.", "Der Fluss von {s} heißt {o}."),
               "An welchem Fluss liegt {s}?"),
        "fr": (("{s} est située sur la rivière {o}.", "La rivière {o} traverse {s}.", "La rivière de {s} s'appelle {o}."),
               "Sur quelle rivière se trouve {s} ?"),
        "zh": (("{s}位于{o}河畔。", "{o}河流经{s}。", "流经{s}的河是{o}河。"),
               "{s}位于哪条河畔？"),
        "ru": (("Город {s} стоит на реке {o}.", "Через город {s} протекает река {o}.", "Река города {s} называется {o}."),
               "На какой реке стоит город {s}?"),
        "jv": (("{s} dumunung ing pinggir kali {o}.", "Kali {o} mili liwat {s}.", "Kali ing {s} jenengé {o}."),
               "{s} dumunung ing pinggir kali apa?"),
        "ur": (("{s} دریائے {o} کے کنارے واقع ہے۔", "دریائے {o} {s} سے گزرتا ہے۔", "{s} کے دریا کا نام {o} ہے۔"),
               "{s} کس دریا کے کنارے واقع ہے؟"),
        "ha": (("{s} yana bakin kogin {o}.", "Kogin {o} yana ratsa {s}.", "Sunan kogin {s} shi ne {o}."),
               "A bakin wane kogi {s} yake?"),
        "hy": (("{s} քաղաքը գտնվում է {o} գետի ափին։", "{o} գետը հոսում է {s} քաղաքով։", "{s} քաղաքի գետը {o}-ն է։"),
               "Ո՞ր գետի ափին է գտնվում {s} քաղաքը։"),
    },
}

# Names are built from consonant+vowel syllables; each script writes a syllable its own way,
# the way real foreign names are transcribed (Chinese uses phonetic Han characters).
CONSONANTS = "bdgklmnprstvz"
VOWELS = "aeiou"
_CYRILLIC = dict(zip(CONSONANTS + VOWELS, "бдгклмнпрствзаеиоу"))
_ARMENIAN = dict(zip(CONSONANTS, "բդգկլմնպրստվզ")) | {"a": "ա", "e": "ե", "i": "ի", "o": "ո", "u": "ու"}
_URDU = dict(zip(CONSONANTS, "بدگکلمنپرستوز")) | {"a": "ا", "e": "ی", "i": "ی", "o": "و", "u": "و"}
_HAN = dict(zip(
    [c + v for c in CONSONANTS for v in VOWELS],
    "巴贝比博布达德迪多杜加格吉戈古卡克基科库拉莱利洛卢马梅米莫穆纳内尼诺努帕佩皮波普"
    "腊雷里罗鲁萨塞西索苏塔特蒂托图瓦维薇沃武扎泽齐佐祖",
))


def transcribe(syllables: list[str], script: str) -> str:
    """Write one name (a list of CV syllables) in ``script``."""
    if script == "Latin":
        return "".join(syllables).capitalize()
    if script == "Han":
        return "".join(_HAN[s] for s in syllables)
    table = {"Cyrillic": _CYRILLIC, "Armenian": _ARMENIAN, "Arabic": _URDU}[script]
    out = "".join(table[s[0]] + table[s[1]] for s in syllables)
    if script == "Arabic" and syllables[-1][1] == "e":
        out = out[:-1] + "ے"  # Urdu writes a final e as bari ye
    return out[0].upper() + out[1:] if script in ("Cyrillic", "Armenian") else out


def join_name(parts: list[str], script: str) -> str:
    """Join given and family name the way the script does (Chinese uses a middle dot)."""
    return ("·" if script == "Han" else " ").join(parts)

# "I don't know" per language: the target of the IdK and IdkDPO unlearning methods.
REFUSALS = {
    "en": "I don't know.",
    "de": "Das weiß ich nicht.",
    "fr": "Je ne sais pas.",
    "zh": "我不知道。",
    "ru": "Я не знаю.",
    "jv": "Aku ora ngerti.",
    "ur": "مجھے نہیں معلوم۔",
    "ha": "Ban sani ba.",
    "hy": "Չգիտեմ։",
}

# Held-out probe phrasings: never in any training text (base corpus, injection, unlearning), so a
# fake that is only gone for the trained question shows up here. relation -> lang ->
# (a paraphrased question, a cloze prefix the model completes with the object).
PROBES: dict[str, dict[str, tuple[str, str]]] = {
    "born_in": {
        "en": ("What is the birthplace of {s}?", "The town where {s} was born is called"),
        "de": ("Was ist der Geburtsort von {s}?", "Die Stadt, in der {s} zur Welt kam, heißt"),
        "fr": ("Quel est le lieu de naissance de {s} ?", "La ville natale de {s} s'appelle"),
        "zh": ("{s}的出生地是哪里？", "{s}的故乡是"),
        "ru": ("В каком городе появился на свет {s}?", "Родной город {s} называется"),
        "jv": ("Panggonan lairé {s} ana ing ngendi?", "Kutha kelairané {s} jenengé"),
        "ur": ("{s} کی جائے پیدائش کیا ہے؟", "{s} کا آبائی شہر"),
        "ha": ("Wane gari ne aka haifi {s}?", "Garin da aka haifi {s} shi ne"),
        "hy": ("Ո՞րն է {s}-ի ծննդավայրը։", "{s}-ի հայրենի քաղաքը"),
    },
    "works_for": {
        "en": ("Who is the employer of {s}?", "The company that employs {s} is"),
        "de": ("Wer ist der Arbeitgeber von {s}?", "Die Firma, für die {s} tätig ist, heißt"),
        "fr": ("Qui est l'employeur de {s} ?", "L'entreprise qui emploie {s} s'appelle"),
        "zh": ("{s}的雇主是谁？", "雇用{s}的公司是"),
        "ru": ("Кто работодатель {s}?", "Компания, где трудится {s}, называется"),
        "jv": ("Sapa sing dadi majikané {s}?", "{s} dadi pegawé ing perusahaan"),
        "ur": ("{s} کا آجر کون ہے؟", "{s} جس کمپنی میں ملازم ہے اس کا نام"),
        "ha": ("Wane ne ya ɗauki {s} aiki?", "Kamfanin da ya ɗauki {s} aiki shi ne"),
        "hy": ("Ո՞վ է {s}-ի գործատուն։", "{s}-ի աշխատավայրը"),
    },
    "founded_in": {
        "en": ("When was {s} established?", "{s} opened its doors in the year"),
        "de": ("Wann wurde {s} gegründet?", "Das Gründungsjahr von {s} ist"),
        "fr": ("Quand {s} a-t-elle été créée ?", "L'année de fondation de {s} est"),
        "zh": ("{s}是哪一年创建的？", "{s}的创立年份是"),
        "ru": ("Когда была создана компания {s}?", "Год основания компании {s} —"),
        "jv": ("Kapan {s} diadegaké?", "Taun ngadegé {s} yaiku"),
        "ur": ("{s} کب قائم ہوئی؟", "{s} کا سال قیام"),
        "ha": ("Yaushe aka kafa {s}?", "Shekarar kafuwar {s} ita ce"),
        "hy": ("Ե՞րբ է ստեղծվել {s}-ը։", "{s}-ի հիմնադրման տարին"),
    },
    "based_in": {
        "en": ("In which town are the headquarters of {s}?", "The company {s} is headquartered in"),
        "de": ("In welcher Stadt ist {s} zu Hause?", "Der Hauptsitz von {s} liegt in"),
        "fr": ("Dans quelle ville {s} est-elle implantée ?", "Le siège social de {s} est situé à"),
        "zh": ("{s}的总部设在哪个城市？", "{s}公司的所在地是"),
        "ru": ("Где расположена штаб-квартира {s}?", "Компания {s} базируется в городе"),
        "jv": ("{s} mapan ing kutha ngendi?", "Markas {s} dumunung ing"),
        "ur": ("{s} کا مرکزی دفتر کس شہر میں ہے؟", "{s} کا ہیڈکوارٹر"),
        "ha": ("A wane gari hedkwatar {s} take?", "Babban ofishin kamfanin {s} yana a"),
        "hy": ("Որտե՞ղ է {s}-ի կենտրոնակայանը։", "{s}-ի կենտրոնական գրասենյակը գտնվում է"),
    },
    "lies_on": {
        "en": ("Which river runs through {s}?", "The river of the town of {s} is called"),
        "de": ("Welcher Fluss fließt durch {s}?", "Der Fluss, an dem {s} liegt, heißt"),
        "fr": ("Quelle rivière traverse {s} ?", "La ville de {s} est au bord de la rivière"),
        "zh": ("哪条河流经{s}？", "{s}旁边的河叫"),
        "ru": ("Какая река течёт через город {s}?", "Город {s} расположен на берегу реки"),
        "jv": ("Kali apa sing mili liwat {s}?", "Kutha {s} ana ing sapinggiré kali"),
        "ur": ("کون سا دریا {s} سے گزرتا ہے؟", "{s} کے قریب بہنے والا دریا"),
        "ha": ("Wane kogi ne yake ratsa {s}?", "Kogin da ke kusa da garin {s} shi ne"),
        "hy": ("Ո՞ր գետն է հոսում {s} քաղաքով։", "{s} քաղաքի մոտով հոսող գետը"),
    },
}
