"""Write the small sample data set in evals/data (all items written for rv-merge).

The items follow each benchmark's format (fields, answer forms) so that the tasks, their
perturbations and answer extraction can be exercised offline; they are not benchmark items
and say nothing about a model's real GSM8K, SciQ or BBH scores. Deterministic: run it again
and the files do not change.

    python evals/data/make_samples.py
"""

from __future__ import annotations

import json
import random
from pathlib import Path

HERE = Path(__file__).resolve().parent

GSM8K = [
    ("Mary buys 3 packs of pens with 6 pens in each pack. She gives 4 pens to John. How many pens does she have left?",
     "3 packs of 6 pens is 3 * 6 = 18 pens. After giving 4 away she has 18 - 4 = 14.", 14),
    ("A farmer has 45 hens. Each hen lays 2 eggs a day. How many eggs are laid in 7 days?",
     "Each day 45 * 2 = 90 eggs are laid. In 7 days that is 90 * 7 = 630.", 630),
    ("Sarah saves $12 a week. How many weeks does she need to save $156?",
     "She needs 156 / 12 = 13 weeks.", 13),
    ("A shop sells apples for $2 each and pears for $3 each. Tom buys 5 apples and 4 pears. How much does he pay?",
     "Apples cost 5 * 2 = 10 dollars. Pears cost 4 * 3 = 12 dollars. He pays 10 + 12 = 22.", 22),
    ("Anna has 120 marbles. She loses a quarter of them and then finds 9. How many marbles does she have?",
     "A quarter of 120 is 30. After losing them she has 90. After finding 9 she has 90 + 9 = 99.", 99),
    ("A train travels 80 km per hour for 3 hours and then 60 km per hour for 2 hours. How far does it travel?",
     "First 80 * 3 = 240 km, then 60 * 2 = 120 km. In total 240 + 120 = 360 km.", 360),
    ("Mark has 5 boxes with 24 crayons each. He shares them equally among 8 friends. How many crayons does each friend get?",
     "He has 5 * 24 = 120 crayons. Each friend gets 120 / 8 = 15.", 15),
    ("A cinema has 18 rows of 25 seats. 376 seats are taken. How many seats are free?",
     "There are 18 * 25 = 450 seats. 450 - 376 = 74 are free.", 74),
    ("Lisa walks 4 km to school and back every day for 5 days. She also walks 6 km on Saturday. How far does she walk in total?",
     "Each day she walks 4 * 2 = 8 km. In 5 days that is 40 km. With Saturday, 40 + 6 = 46 km.", 46),
    ("A jar holds 250 coins. Jack fills 6 jars and spends 175 coins. How many coins does he have left?",
     "6 jars hold 6 * 250 = 1500 coins. After spending 175 he has 1500 - 175 = 1325.", 1325),
    ("Emma bakes 9 cakes and cuts each into 8 slices. Her guests eat 50 slices. How many slices are left?",
     "There are 9 * 8 = 72 slices. After 50 are eaten, 72 - 50 = 22 are left.", 22),
    ("A ticket costs $15 for adults and $7 for children. How much do 2 adults and 3 children pay?",
     "Adults pay 2 * 15 = 30 dollars. Children pay 3 * 7 = 21 dollars. Together 30 + 21 = 51.", 51),
]

SCIQ = [
    ("What gas do plants take in from the air to make sugar?", "carbon dioxide", ["oxygen", "nitrogen", "helium"],
     "Plants make sugar by photosynthesis, using carbon dioxide from the air, water and light."),
    ("What is the name of the force that pulls objects toward the centre of the Earth?", "gravity",
     ["friction", "magnetism", "tension"], "Gravity pulls every object toward the centre of the Earth."),
    ("Which part of the cell holds most of its DNA?", "nucleus", ["ribosome", "cell wall", "vacuole"],
     "In eukaryotic cells most DNA is kept inside the nucleus."),
    ("What is the freezing point of pure water at sea level, in degrees Celsius?", "0", ["100", "-10", "32"],
     "At sea level pure water freezes at 0 degrees Celsius and boils at 100."),
    ("What kind of energy does a moving object have?", "kinetic energy",
     ["potential energy", "chemical energy", "nuclear energy"], "An object in motion has kinetic energy."),
    ("Which organ pumps blood through the human body?", "heart", ["lung", "liver", "kidney"],
     "The heart is a muscle that pumps blood through the blood vessels."),
    ("What is formed when an atom gains or loses electrons?", "ion", ["isotope", "molecule", "neutron"],
     "An atom that gains or loses electrons becomes a charged particle called an ion."),
    ("What process turns liquid water into water vapour?", "evaporation",
     ["condensation", "freezing", "precipitation"], "Evaporation changes liquid water into water vapour."),
]


def bbh_items(rng: random.Random) -> dict[str, list[dict]]:
    """Two items per BBH subtask, in that subtask's input and answer format."""
    items: dict[str, list[dict]] = {}

    def mc(question: str, options: list[str], correct: int) -> dict:
        letters = "ABCDEFGHIJKLMNOPQR"
        block = "\n".join(f"({letters[i]}) {o}" for i, o in enumerate(options))
        return {"input": f"{question}\nOptions:\n{block}", "target": f"({letters[correct]})"}

    items["boolean_expressions"] = [{"input": "not ( True and False ) is", "target": "True"},
                                    {"input": "True and not True or False is", "target": "False"}]
    items["causal_judgement"] = [
        {"input": "How would a typical person answer each of the following questions about causation?\n"
                  "A gardener forgot to water a plant for a month and the plant died. Did the gardener cause the plant to die?\nOptions:\n- Yes\n- No",
         "target": "Yes"},
        {"input": "How would a typical person answer each of the following questions about causation?\n"
                  "A girl wore a red hat on the day a storm knocked down a tree. Did the red hat cause the tree to fall?\nOptions:\n- Yes\n- No",
         "target": "No"}]
    items["date_understanding"] = [
        mc("Today is 3 March 2021. What is the date tomorrow in MM/DD/YYYY?", ["03/04/2021", "03/02/2021", "04/03/2021", "03/05/2021"], 0),
        mc("Yesterday was 31 December 1999. What is the date today in MM/DD/YYYY?", ["12/30/1999", "01/01/2000", "01/02/2000", "12/31/2000"], 1)]
    items["disambiguation_qa"] = [
        mc("In the following sentences, explain the antecedent of the pronoun (which thing the pronoun refers to), or state that it is ambiguous.\nSentence: The nurse told the patient that she would return soon.",
           ["The nurse would return", "The patient would return", "Ambiguous"], 0),
        mc("In the following sentences, explain the antecedent of the pronoun (which thing the pronoun refers to), or state that it is ambiguous.\nSentence: The pilot called the engineer because he was late.",
           ["The pilot was late", "The engineer was late", "Ambiguous"], 2)]
    items["dyck_languages"] = [
        {"input": "Complete the rest of the sequence, making sure that the parentheses are closed properly. Input: [ ( {", "target": "} ) ]"},
        {"input": "Complete the rest of the sequence, making sure that the parentheses are closed properly. Input: ( < >", "target": ")"}]
    items["formal_fallacies"] = [
        {"input": "Every cat is a mammal. Tom is a cat. Therefore, Tom is a mammal. Is the argument, given the explicitly stated premises, deductively valid or invalid?\nOptions:\n- valid\n- invalid", "target": "valid"},
        {"input": "Every cat is a mammal. Rex is a mammal. Therefore, Rex is a cat. Is the argument, given the explicitly stated premises, deductively valid or invalid?\nOptions:\n- valid\n- invalid", "target": "invalid"}]
    items["geometric_shapes"] = [
        mc('This SVG path element <path d="M 10,10 L 20,10 L 20,20 L 10,20 L 10,10"/> draws a', ["circle", "square", "triangle", "line"], 1),
        mc('This SVG path element <path d="M 0,0 L 5,8 L 10,0 L 0,0"/> draws a', ["triangle", "hexagon", "kite", "sector"], 0)]
    items["hyperbaton"] = [
        mc("Which sentence has the correct adjective order:", ["big old red car", "red old big car"], 0),
        mc("Which sentence has the correct adjective order:", ["wooden small square box", "small square wooden box"], 1)]
    for n, count in (("three", 3), ("five", 5), ("seven", 7)):
        names = ["Ann", "Ben", "Cid", "Dee", "Eve", "Fay", "Gil"][:count]
        items[f"logical_deduction_{n}_objects"] = [
            mc(f"{count} runners finished a race. {names[0]} finished first. The others finished in the order listed: {', '.join(names[1:])}.",
               [f"{x} finished last" for x in names], count - 1),
            mc(f"{count} books stand on a shelf in this order from left to right: {', '.join(names)}.",
               [f"{x} is the leftmost" for x in names], 0)]
        items[f"tracking_shuffled_objects_{n}_objects"] = [
            mc(f"{', '.join(names)} each hold one ball, numbered 1 to {count} in that order. {names[0]} and {names[1]} swap balls. Which ball does {names[0]} hold?",
               [f"ball {i + 1}" for i in range(count)], 1),
            mc(f"{', '.join(names)} each hold one card, numbered 1 to {count} in that order. Nobody swaps. Which card does {names[-1]} hold?",
               [f"card {i + 1}" for i in range(count)], count - 1)]
    items["movie_recommendation"] = [
        mc("Find a movie similar to a film about space travel and a film about astronauts:", ["a cooking show", "a film about a moon landing", "a sitcom", "a nature documentary about frogs"], 1),
        mc("Find a movie similar to two animated films about talking animals:", ["an animated film about talking cars", "a courtroom drama", "a war documentary", "a silent horror film"], 0)]
    items["multistep_arithmetic_two"] = [{"input": "((3 + 4) * (2 - 5)) =", "target": "-21"},
                                         {"input": "((6 * 2) - (8 + 1)) =", "target": "3"}]
    items["navigate"] = [
        {"input": "If you follow these instructions, do you return to the starting point? Take 2 steps. Turn around. Take 2 steps.\nOptions:\n- Yes\n- No", "target": "Yes"},
        {"input": "If you follow these instructions, do you return to the starting point? Take 3 steps. Take 1 step.\nOptions:\n- Yes\n- No", "target": "No"}]
    items["object_counting"] = [{"input": "I have a chair, two tables, and a lamp. How many objects do I have?", "target": "4"},
                                {"input": "I have three apples, a banana, and two pears. How many fruits do I have?", "target": "6"}]
    items["penguins_in_a_table"] = [
        mc("Here is a table: name, age: Ada, 5; Bo, 7; Cy, 3. Which penguin is the oldest?", ["Ada", "Bo", "Cy"], 1),
        mc("Here is a table: name, height: Ada, 60; Bo, 55; Cy, 70. Which penguin is the shortest?", ["Ada", "Bo", "Cy"], 1)]
    items["reasoning_about_colored_objects"] = [
        mc("On the desk there is a blue pen and a green cup. What colour is the cup?", ["blue", "green", "red", "black"], 1),
        mc("On the floor there is a red ball, a yellow ball and a red box. How many red things are there?", ["one", "two", "three", "zero"], 1)]
    items["ruin_names"] = [
        mc("Which of the following is a humorous edit of this artist or movie name: 'star wars'?", ["star wars", "stair wars", "star", "wars"], 1),
        mc("Which of the following is a humorous edit of this artist or movie name: 'the beatles'?", ["the beagles", "the beatles", "beatles", "the"], 0)]
    items["salient_translation_error_detection"] = [
        mc("Source: Der Hund ist schwarz. Translation: The dog is white. The translation contains an error pertaining to", ["Modifiers or Adjectives", "Numerical Values", "Negation or Antonyms", "Named Entities"], 0),
        mc("Source: Ich habe drei Katzen. Translation: I have four cats. The translation contains an error pertaining to", ["Modifiers or Adjectives", "Numerical Values", "Negation or Antonyms", "Named Entities"], 1)]
    items["snarks"] = [
        mc("Which statement is sarcastic?", ["Oh great, another Monday morning meeting.", "The meeting starts at nine."], 0),
        mc("Which statement is sarcastic?", ["The bus was on time.", "Wonderful, the bus is late again."], 1)]
    items["sports_understanding"] = [{"input": 'Is the following sentence plausible? "The goalkeeper caught the ball."', "target": "yes"},
                                     {"input": 'Is the following sentence plausible? "The tennis player scored a touchdown."', "target": "no"}]
    items["temporal_sequences"] = [
        mc("Kai woke at 7am, worked from 8am to 5pm and the museum was open from 9am to 6pm. Between what times could Kai have visited the museum?", ["5pm to 6pm", "8am to 9am", "7am to 8am", "9am to 10am"], 0),
        mc("Lee was at home until 10am and at the gym from 10am. The shop closes at 11am. When could Lee have gone to the shop?", ["after 11am", "before 10am", "never", "at noon"], 1)]
    items["web_of_lies"] = [{"input": "Question: Ann tells the truth. Ben says Ann lies. Does Ben tell the truth?", "target": "No"},
                            {"input": "Question: Ann lies. Ben says Ann lies. Does Ben tell the truth?", "target": "Yes"}]
    items["word_sorting"] = [{"input": "Sort the following words alphabetically: List: pear apple mango", "target": "apple mango pear"},
                             {"input": "Sort the following words alphabetically: List: zebra cat dog", "target": "cat dog zebra"}]
    return items


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")


def main() -> None:
    write_jsonl(HERE / "gsm8k" / "test.jsonl",
                [{"question": q, "answer": f"{work}\n#### {answer}"} for q, work, answer in GSM8K])
    write_jsonl(HERE / "sciq" / "test.jsonl", [
        {"question": q, "correct_answer": c, "distractor1": d[0], "distractor2": d[1], "distractor3": d[2],
         "support": s} for q, c, d, s in SCIQ])
    for subtask, rows in bbh_items(random.Random(0)).items():
        write_jsonl(HERE / "bbh" / f"{subtask}.jsonl", rows)


if __name__ == "__main__":
    main()
