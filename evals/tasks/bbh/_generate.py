"""Write the per-subtask YAML files of the rv_bbh tasks, their variants and group files.

Each variant has a template here (next to bbh_hooks.py, where `!function` resolves) that
includes the base template and changes one thing; each subtask file includes a template.

    python evals/tasks/bbh/_generate.py
"""

from pathlib import Path

HERE = Path(__file__).resolve().parent
SUBTASKS = [
    "boolean_expressions", "causal_judgement", "date_understanding", "disambiguation_qa",
    "dyck_languages", "formal_fallacies", "geometric_shapes", "hyperbaton",
    "logical_deduction_five_objects", "logical_deduction_seven_objects",
    "logical_deduction_three_objects", "movie_recommendation", "multistep_arithmetic_two",
    "navigate", "object_counting", "penguins_in_a_table", "reasoning_about_colored_objects",
    "ruin_names", "salient_translation_error_detection", "snarks", "sports_understanding",
    "temporal_sequences", "tracking_shuffled_objects_five_objects",
    "tracking_shuffled_objects_seven_objects", "tracking_shuffled_objects_three_objects",
    "web_of_lies", "word_sorting",
]
# Subtasks whose answers are lettered options "(A)", "(B)", ...: the ones re-ordering applies to.
LETTERED = [s for s in SUBTASKS if s not in {
    "boolean_expressions", "causal_judgement", "dyck_languages", "formal_fallacies",
    "multistep_arithmetic_two", "navigate", "object_counting", "sports_understanding",
    "web_of_lies", "word_sorting"}]
VARIANTS = {  # suffix -> (tag, extra YAML lines, perturbation, subtasks)
    "": ("rv_base", [], None, SUBTASKS),
    "_think": ("rv_think", ['description: "Think step by step.\\n\\n"'],
               "prompt condition: 'Think step by step.' before the examples", SUBTASKS),
    "_irrelevant": ("rv_adversarial", ["process_docs: !function bbh_hooks.irrelevant"],
                    "an irrelevant sentence before the problem", SUBTASKS),
    "_reorder": ("rv_adversarial", ["process_docs: !function bbh_hooks.reorder"],
                 "lettered options re-ordered so the correct one moves; target re-lettered", LETTERED),
}


def main() -> None:
    for suffix, (tag, extra, perturbation, subtasks) in VARIANTS.items():
        folder = HERE / (f"variants{suffix}" if suffix else "base")
        folder.mkdir(exist_ok=True)
        template = "_rv_bbh_template.yaml"
        if suffix:
            template = f"_rv_bbh{suffix}_template.yaml"
            (HERE / template).write_text("\n".join(
                [f"# rv_bbh{suffix}: {perturbation}", "include: _rv_bbh_template.yaml", *extra]) + "\n")
        for subtask in subtasks:
            base = f"rv_bbh_{subtask}"
            meta = "{version: 1.0, benchmark: bbh"
            meta += f', base: {base}, perturbation: "{perturbation}"}}' if perturbation else "}"
            lines = [
                f"include: ../{template}",
                f"task: rv_bbh{suffix}_{subtask}" if suffix else f"task: {base}",
                f"tag: [{tag}]",
                f"dataset_kwargs: {{subtask: {subtask}}}",
                f"metadata: {meta}",
            ]
            (folder / f"{subtask}.yaml").write_text("\n".join(lines) + "\n")
        group = f"rv_bbh{suffix}"
        tasks = "\n".join(f"  - rv_bbh{suffix}_{s}" for s in subtasks)
        (folder / f"_{group}.yaml").write_text(
            f"group: {group}\ntask:\n{tasks}\naggregate_metric_list:\n"
            "  - {metric: exact_match, aggregation: mean, weight_by_size: true, filter_list: get-answer}\n"
            f"metadata: {{version: 1.0, kind: {tag}"
            + (f', base: rv_bbh, perturbation: "{perturbation}"}}\n' if suffix else "}\n"))


if __name__ == "__main__":
    main()
