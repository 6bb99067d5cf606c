"""The sound world's classes: names, the words that name them, caption phrases, sources.

Every class's WORDS are the tokens that name it in a caption (nouns, and the
verbs that only it makes). They are disjoint between classes and never appear
in any other phrase of the grammar, so a caption's class words tell exactly
which events it names (tests/py/test_world.py checks this; the next step's
"event recall" counts them in generated captions). data/world/classes.tsv is
this table, written by `scripts/world.py --classes`.

A class's FORMS are groups (subjects, verbs): a subject is (text, plural);
a verb is (3rd person singular, plural, -ing form). A subject without a
class word is only used with a verb that has one.

SOURCES say where its recordings come from:
  ("proc", KIND, N)                 N procedural variants of generator KIND
  ("freedesktop", [NAME, ...])      /usr/share/sounds/freedesktop/stereo/NAME.oga
  ("wesnoth", [GLOB, ...])          wesnoth-1.16-data sound effects
  ("gm", [PROGRAM, ...], KIND, N)   FluidR3 GM programs rendered by fluidsynth,
                                    N phrases each (KIND: melody, drums, effect)
  ("espeak", [VOICE, ...], N)       espeak-ng voices, N sentences each
A recording GROUP (one file, one GM program, one espeak voice, one procedural
variant) is the unit the split holds out.
"""


def S(text):
    return (text, False)


def P(text):
    return (text, True)


def V(sg, pl, ing):
    return (sg, pl, ing)


def regular(sg_stem):
    """'bark' -> ('barks', 'bark', 'barking') for simple verbs (with a tail: 'walk by')."""
    head, _, tail = sg_stem.partition(" ")
    tail = (" " + tail) if tail else ""
    double = (len(head) <= 4 and len(head) >= 3 and head[-1] not in "aeiouwxy" and head[-2] in "aeiou"
              and head[-3] not in "aeiou")
    if head.endswith(("sh", "ch", "s", "x", "zz", "o")):
        sg = head + "es"
    elif head.endswith("y") and head[-2] not in "aeiou":
        sg = head[:-1] + "ies"
    else:
        sg = head + "s"
    if double:
        ing = head + head[-1] + "ing"
    elif head.endswith("e") and not head.endswith(("ee", "ye")):
        ing = head[:-1] + "ing"
    else:
        ing = head + "ing"
    return (sg + tail, head + tail, ing + tail)


R = regular
PLAY = [R("play"), R("play a tune"), R("play a melody")]

# name, words, forms, sources, options
CLASSES = [
    # --- procedural, background ---
    dict(name="rain", role="bg", words="rain raindrops rainfall downpour",
         forms=[([S("rain"), S("steady rain"), S("the rain"), P("raindrops"), S("a downpour")],
                 [R("fall"), R("pour"), R("patter"), R("hit the ground")])],
         sources=[("proc", "rain", 12)]),
    dict(name="wind", role="bg", words="wind breeze gusts",
         forms=[([S("the wind"), S("wind"), S("a breeze"), P("gusts of wind")],
                 [R("blow"), R("rush"), R("sweep past")])],
         sources=[("proc", "wind", 12)]),
    dict(name="engine", role="bg", words="engine engines motor",
         forms=[([S("an engine"), S("a motor"), S("a car engine"), S("a diesel engine")],
                 [R("hum"), R("run"), R("drone"), R("rumble"), R("idle")])],
         sources=[("proc", "engine", 12)]),
    dict(name="waves", role="bg", words="waves wave surf sea ocean seashore shore",
         forms=[([P("waves"), P("ocean waves"), S("the surf"), S("the sea")],
                 [R("crash"), R("wash ashore"), R("break"), R("roll onto the beach")])],
         sources=[("proc", "waves", 12), ("gm", [122], "effect", 4)]),
    # --- procedural, foreground ---
    dict(name="siren", words="siren sirens ambulance police", pitch=True,
         forms=[([S("a siren"), S("an ambulance siren"), S("a police siren"), P("sirens")],
                 [R("wail"), R("blare"), R("sound")])],
         sources=[("proc", "siren", 12)]),
    dict(name="beep", words="beep beeps beeping beeper", pitch=True, repeat=True,
         forms=[([S("a machine"), S("a device"), S("an electronic device"), S("a beeper")],
                 [R("beep"), V("emits a beep", "emit a beep", "emitting a beep")])],
         sources=[("proc", "beep", 12)]),
    dict(name="ticking", words="clock ticks ticking tick", cut=False,
         forms=[([S("a clock"), S("a wall clock"), S("an old clock")],
                 [R("tick"), V("ticks away", "tick away", "ticking away")])],
         sources=[("proc", "ticking", 12)]),
    dict(name="dripping", words="drips dripping drip water faucet droplets", cut=False,
         forms=[([S("water"), S("a faucet"), S("a leaky faucet"), P("droplets")],
                 [R("drip"), R("trickle")])],
         sources=[("proc", "dripping", 12)]),
    dict(name="footsteps", words="footsteps footstep walks walk walking",
         forms=[([S("someone"), S("a person")], [R("walk"), R("walk by"), R("walk across the floor")]),
                ([P("footsteps")], [R("approach"), R("echo"), R("pass by")])],
         sources=[("proc", "footsteps", 12)]),
    dict(name="knocking", words="knock knocks knocking door", repeat=True,
         forms=[([S("someone"), S("a person")], [R("knock on a door"), R("knock on the door"), R("knock")]),
                ([S("a door")], [V("is knocked on", "are knocked on", "being knocked on")])],
         sources=[("proc", "knocking", 12)]),
    dict(name="thunder", words="thunder thunderclap thunderstorm lightning",
         forms=[([S("thunder"), S("a thunderclap"), S("a thunderstorm")], [R("rumble"), R("crack"), R("crash")])],
         sources=[("proc", "thunder", 12), ("wesnoth", ["lightning.*", "lightning-miss.*"])]),
    dict(name="applause", words="applause applauds applaud applauding clapping claps clap audience",
         forms=[([S("an audience"), S("a crowd"), P("people")], [R("applaud"), R("clap")]),
                ([S("applause")], [R("rise"), R("fill the room"), R("break out")])],
         sources=[("proc", "applause", 12), ("gm", [126], "effect", 4)]),
    dict(name="helicopter", words="helicopter helicopters rotor rotors chopper",
         forms=[([S("a helicopter"), S("a chopper")], [R("fly overhead"), R("hover"), R("pass by")]),
                ([P("helicopter rotors")], [R("whir"), R("spin")])],
         sources=[("proc", "helicopter", 12), ("gm", [125], "effect", 4)]),
    dict(name="alarm", words="alarm alarms buzzer", repeat=True,
         forms=[([S("an alarm"), S("an electronic alarm"), S("a buzzer")],
                 [V("goes off", "go off", "going off"), R("sound"), R("buzz")])],
         sources=[("proc", "alarm", 10), ("freedesktop", ["alarm-clock-elapsed"])]),
    # --- sound-theme-freedesktop (+ GM) ---
    dict(name="bell", words="bell bells ding dings dinging", pitch=True, repeat=True,
         forms=[([S("a bell"), S("a small bell"), S("a bicycle bell"), P("bells")], [R("ring"), R("ding")])],
         sources=[("freedesktop", ["bell"]), ("gm", [14, 112], "melody", 4)]),
    dict(name="telephone", words="telephone phone phones ringtone cellphone", repeat=True,
         forms=[([S("a telephone"), S("a phone"), S("an old telephone"), S("a cellphone")], [R("ring")]),
                ([S("a ringtone")], [R("play"), R("sound")])],
         sources=[("freedesktop", ["phone-incoming-call", "phone-outgoing-calling", "phone-outgoing-busy"]),
                  ("gm", [124], "effect", 4)]),
    dict(name="shutter", words="camera shutter shutters", repeat=True,
         forms=[([S("a camera"), S("a camera shutter"), S("a shutter")], [R("click"), R("snap")])],
         sources=[("freedesktop", ["camera-shutter", "screen-capture"])]),
    dict(name="chime", words="chime chimes chiming notification jingle", pitch=True, repeat=True,
         forms=[([S("a notification"), S("a chime"), S("a short jingle"), S("an electronic chime")],
                 [R("sound"), R("play")]),
                ([S("a computer"), S("a device")], [R("chime")])],
         sources=[("freedesktop", ["complete", "message", "message-new-instant",
                                   "dialog-warning", "dialog-error", "service-login", "service-logout",
                                   "window-question", "window-attention", "device-added", "device-removed",
                                   "network-connectivity-established", "network-connectivity-lost",
                                   "power-plug", "power-unplug", "suspend-error"])]),
    # --- speech: espeak-ng, freedesktop's recorded voice ---
    dict(name="man", words="man men gentleman male",
         forms=[([S("a man"), S("a male voice"), S("a gentleman")],
                 [R("speak"), R("talk"), V("says something", "say something", "saying something")])],
         sources=[("espeak", ["en+m1", "en+m2", "en+m3", "en+m4", "en+m5", "en+m6", "en+m7",
                              "en-us+m1", "en-us+m3", "en-us+m5", "en-gb-scotland+m2", "en-gb-x-rp+m4"], 3)]),
    dict(name="woman", words="woman women lady female",
         forms=[([S("a woman"), S("a female voice"), S("a lady")],
                 [R("speak"), R("talk"), V("says something", "say something", "saying something")])],
         sources=[("freedesktop", ["audio-channel-front-left", "audio-channel-front-right",
                                   "audio-channel-front-center", "audio-channel-rear-left",
                                   "audio-channel-rear-right", "audio-channel-rear-center",
                                   "audio-channel-side-left", "audio-channel-side-right"]),
                  ("espeak", ["en+f1", "en+f2", "en+f3", "en+f4", "en+f5",
                              "en-us+f1", "en-us+f2", "en-us+f4"], 3)]),
    dict(name="whisper", words="whispers whisper whispering whispered",
         forms=[([S("someone"), S("a person"), S("a voice")], [R("whisper"), R("whisper something")])],
         sources=[("espeak", ["en+whisper", "en+whisperf", "en-us+whisper", "en-us+whisperf"], 3)]),
    # --- wesnoth-1.16-data ---
    dict(name="birds", role="both", words="bird birds chirp chirps chirping tweet tweets tweeting birdsong songbirds",
         forms=[([P("birds"), S("a bird"), P("small birds"), P("songbirds")], [R("chirp"), R("sing"), R("tweet")])],
         sources=[("wesnoth", ["ambient/birds1.*", "ambient/birds2.*", "ambient/birds3.*",
                               "ambient/morning.*"]), ("gm", [123], "effect", 4)]),
    dict(name="fire", role="both", words="fire flames campfire crackle crackles crackling bonfire",
         forms=[([S("a fire"), S("a campfire"), P("flames"), S("a bonfire")], [R("crackle"), R("burn")])],
         sources=[("wesnoth", ["ambient/campfire.*", "fire.*", "torch.*", "torch-miss.*",
                               "flame-big.*", "flame-big-miss.*", "melee-fire.*"])]),
    dict(name="galloping", words="hooves galloping gallops gallop",
         forms=[([P("hooves")], [R("clatter"), R("pound")]),
                ([S("a rider"), S("someone")], [R("gallop by"), R("gallop past")])],
         sources=[("wesnoth", ["horse-canter.*", "horse-elf-canter.*"])]),
    dict(name="horse", words="horse horses neighs neigh neighing whinnies whinny whinnying",
         forms=[([S("a horse"), P("horses")], [R("neigh"), V("whinnies", "whinny", "whinnying"), R("snort")])],
         sources=[("wesnoth", ["horse-hit-*.*", "horse-die.*"])]),
    dict(name="wolf", words="wolf wolves growls growl growling snarls snarl snarling",
         forms=[([S("a wolf"), P("wolves"), S("an angry wolf")], [R("growl"), R("snarl"), R("yelp")])],
         sources=[("wesnoth", ["wolf-growl-*.*", "wolf-hit-*.*", "wolf-die-*.*"])]),
    dict(name="horn", words="horn horns bugle", pitch=True,
         forms=[([S("a horn"), S("a hunting horn"), S("a bugle")], [R("blow"), R("sound"), R("blare")])],
         sources=[("wesnoth", ["horn-signals/horn-*.*"])]),
    dict(name="metal", words="sword swords blade blades metal clang clangs clanging clash clashes clashing",
         repeat=True,
         forms=[([P("swords"), P("blades"), S("metal")], [R("clang"), R("clash"), R("ring out")])],
         sources=[("wesnoth", ["sword-*.*", "mace.*", "axe.*", "hatchet.*", "flail.*",
                               "spear.*", "club.*", "staff.*"])]),
    dict(name="whoosh", words="whoosh whooshes whooshing swish swishes swishing swoosh", repeat=True,
         forms=[([S("something"), S("an object")], [R("whoosh past"), R("swish through the air")]),
                ([S("a whoosh"), S("a swoosh")], [R("pass"), R("sweep past")])],
         sources=[("wesnoth", ["miss-*.*", "dagger-swish.*", "club-miss.*", "hatchet-miss.*",
                               "mace-miss.*", "flail-miss.*", "staff-miss.*", "spear-miss.*",
                               "throw-*.*"])]),
    dict(name="arrow", words="arrow arrows bowstring crossbow archer", repeat=True,
         forms=[([S("an arrow"), P("arrows")], [R("fly past"), V("whizzes by", "whiz by", "whizzing by")]),
                ([S("an archer"), S("someone")], [V("shoots an arrow", "shoot arrows", "shooting an arrow")]),
                ([S("a crossbow"), S("a bowstring")], [R("snap"), R("twang")])],
         sources=[("wesnoth", ["bow.*", "bow-puny.*", "crossbow.*", "crossbow-miss.*", "bow-miss.*",
                               "bow-puny-miss.*"])]),
    dict(name="gunshot", words="gun guns gunshot gunshots gunfire rifle pistol", repeat=True,
         forms=[([S("a gun"), S("a rifle"), S("a pistol")], [V("goes off", "go off", "going off"), R("bang")]),
                ([S("a gunshot"), P("gunshots"), S("gunfire")], [R("ring out"), R("echo")])],
         sources=[("wesnoth", ["gunshot.*", "thunderstick.*", "thunderstick-miss.*", "dragonstick.*",
                               "dragonstick-miss.*"]), ("gm", [127], "effect", 4)]),
    dict(name="explosion", words="explosion explosions blast blasts boom booms explodes explode exploding",
         forms=[([S("an explosion"), S("a blast"), S("a big boom")], [V("goes off", "go off", "going off"),
                                                                        R("echo"), R("shake the ground")]),
                ([S("something")], [V("explodes", "explode", "exploding")])],
         sources=[("wesnoth", ["explosion.*", "cave-in.*", "rumble.*", "fuse.*"])]),
    dict(name="grunt", words="grunts grunt grunting groans groan groaning",
         forms=[([S("someone"), S("a person")], [R("grunt"), R("groan"), R("grunt in pain")])],
         sources=[("wesnoth", ["human-hit-*.*", "human-die-*.*", "human-old-hit-*.*", "human-old-die-*.*",
                               "dwarf-hit-*.*", "dwarf-die-*.*", "groan.*"])]),
    dict(name="scream", words="scream screams screaming shriek shrieks shrieking",
         forms=[([S("someone"), S("a person")], [R("scream"), R("shriek"), R("scream in pain")])],
         sources=[("wesnoth", ["human-female-hit-*.*", "human-female-die-*.*", "mermaid-hit.*",
                               "mermaid-die.*"])]),
    dict(name="roar", words="roar roars roaring beast monster ogre troll",
         forms=[([S("a beast"), S("a monster"), S("a troll"), S("a large creature")], [R("roar"), R("bellow")])],
         sources=[("wesnoth", ["ogre-hit-*.*", "ogre-die-*.*", "troll-hit-*.*", "troll-die-*.*",
                               "yeti-hit.*", "yeti-die.*"])]),
    dict(name="hiss", words="hiss hisses hissing snake serpent",
         forms=[([S("a snake"), S("a serpent")], [R("hiss")]), ([S("something")], [R("hiss")])],
         sources=[("wesnoth", ["hiss.*", "hiss-big.*", "hiss-hit.*", "hiss-die.*", "naga-hit-*.*",
                               "naga-die.*"])]),
    dict(name="screech", words="screech screeches screeching hawk eagle",
         forms=[([S("a hawk"), S("an eagle")], [R("screech"), R("cry out")]),
                ([S("a creature")], [R("screech")])],
         sources=[("wesnoth", ["gryphon-shriek-*.*", "gryphon-hit-*.*", "gryphon-die-*.*"])]),
    # --- fluid-soundfont-gm rendered by fluidsynth (+ wesnoth) ---
    dict(name="piano", words="piano pianos pianist", pitch=True,
         forms=[([S("a piano"), S("a pianist"), S("an old piano")], PLAY),
                ([S("someone")], [V("plays the piano", "play the piano", "playing the piano")])],
         sources=[("gm", [0, 1, 2, 3], "melody", 3)]),
    dict(name="guitar", words="guitar guitars guitarist", pitch=True,
         forms=[([S("a guitar"), S("a guitarist")], PLAY),
                ([S("someone")], [V("strums a guitar", "strum a guitar", "strumming a guitar"),
                                  V("plays the guitar", "play the guitar", "playing the guitar")])],
         sources=[("gm", [24, 25, 26, 27], "melody", 3)]),
    dict(name="strings", words="violin violins fiddle cello viola violinist", pitch=True,
         forms=[([S("a violin"), S("a cello"), S("a fiddle"), S("a viola")], PLAY),
                ([S("someone")], [V("plays the violin", "play the violin", "playing the violin")])],
         sources=[("gm", [40, 41, 42, 110], "melody", 3)]),
    dict(name="flute", words="flute flutes piccolo flutist", pitch=True,
         forms=[([S("a flute"), S("a piccolo"), S("a flutist")], PLAY),
                ([S("someone")], [V("plays the flute", "play the flute", "playing the flute")])],
         sources=[("gm", [72, 73, 74, 75], "melody", 3)]),
    dict(name="brass", words="trumpet trumpets trombone brass fanfare", pitch=True,
         forms=[([S("a trumpet"), S("a trombone"), S("a brass section")], PLAY + [R("blare")]),
                ([S("a fanfare")], [R("play"), R("sound")])],
         sources=[("gm", [56, 57, 59, 61], "melody", 3), ("wesnoth", ["fanfare-short.*"])]),
    dict(name="organ", words="organ organs organist", pitch=True,
         forms=[([S("an organ"), S("a church organ"), S("an organist")], PLAY),
                ([S("someone")], [V("plays the organ", "play the organ", "playing the organ")])],
         sources=[("gm", [16, 17, 19, 20], "melody", 3)]),
    dict(name="drums", words="drum drums drummer drumming percussion",
         forms=[([S("a drummer")], PLAY + [R("play a beat")]),
                ([S("someone")], [V("plays the drums", "play the drums", "playing the drums"),
                                  V("beats a drum", "beat a drum", "beating a drum")]),
                ([P("drums"), S("percussion")], [R("pound"), R("play a rhythm")])],
         sources=[("gm", [0, 8, 16, 24, 25, 32, 40], "drums", 3), ("wesnoth", ["ambient/wardrums.*"])]),
    dict(name="mallets", words="xylophone marimba vibraphone glockenspiel", pitch=True,
         forms=[([S("a xylophone"), S("a marimba"), S("a vibraphone"), S("a glockenspiel")], PLAY),
                ([S("someone")], [V("plays the xylophone", "play the xylophone", "playing the xylophone")])],
         sources=[("gm", [9, 11, 12, 13], "melody", 3)]),
]

# the grammar's own vocabulary: connectors and modifiers (tests/py/test_world.py
# keeps its own copy: a caption's claims are checked against the scene's events)
CONNECT_SEQ = ["then", "before", "followed"]        # the first-named event ends before the next begins
CONNECT_SEQ_REVERSED = ["after"]                     # the next-named event ends before this one begins
CONNECT_OVERLAP = ["while", "as", "with"]            # both sound at once
LOUD_WORDS = {"loud": "loud", "loudly": "loud",
              "quiet": "quiet", "quietly": "quiet", "soft": "quiet", "softly": "quiet",
              "faint": "quiet", "faintly": "quiet", "distance": "quiet"}
PITCH_WORDS = {"high-pitched": "high", "shrill": "high", "high": "high",
               "low-pitched": "low", "deep": "low", "low": "low"}
REPEAT_WORDS = {"twice": 2, "two": 2, "repeatedly": 3, "several": 3, "few": 3}
LOUD_DB, QUIET_DB = -14.0, -26.0                     # event level (dB RMS) category thresholds
