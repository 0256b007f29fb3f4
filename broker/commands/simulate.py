"""`gel chains simulate`: N cases of a chain through the real engine under a virtual clock, scenario beside
scenario (the 'situación actual' of the program's diagnosis and the new single window), and beside the
program's published figures."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from broker.commands.output import console, fail, print_json
from broker.gelxml import GelFault, load_registry
from broker.gelxml.faults import FaultCode, falla
from broker.orchestrator.definition import ChainDefinition, DefinitionError, latest, load_library
from broker.orchestrator.simulation import (
    SCENARIO_UNKNOWN,
    SimulationError,
    SimulationModel,
    SimulationReport,
    read_model,
    readable,
    simulate,
)
from broker.settings import get_settings

__all__ = ["simulate_command"]

BOTH = "ambos"
SCENARIO_HINT = "use actual, nuevo o ambos (los escenarios que declara la sección simulation de la cadena)"


def _definition(chain: str) -> ChainDefinition:
    folder = get_settings().chains_dir
    try:
        library = load_library(folder)
    except DefinitionError as exc:
        fail("GEL-CHAIN-DEFINITION", str(exc), "corrija la definición (gel chains lint la revisa)")
    found = latest(library, chain)
    if found is None:
        names = ", ".join(sorted({name for name, _ in library})) or "ninguna"
        problem = falla(FaultCode.CHAIN_UNKNOWN, chain=chain, version="", folder=folder, available=names)
        fail(str(problem.code), problem.message, "revise el nombre (campo chain del YAML) o GEL_CHAINS_DIR")
    return found


def _scenarios(model: SimulationModel, asked: str) -> list[str]:
    if asked == BOTH:
        return [s.name for s in model.scenarios]
    return [model.scenario(asked).name]


def _run(definition: ChainDefinition, names: Sequence[str], *, cases: int, seed: int,
         show_progress: bool) -> list[SimulationReport]:
    registry = load_registry(get_settings().schemas_dir)
    if not show_progress:
        return [simulate(definition, cases=cases, scenario=name, seed=seed, registry=registry) for name in names]
    columns = (TextColumn("Simulando el escenario {task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn())
    reports = []
    with Progress(*columns, console=console, transient=True) as progress:
        for name in names:
            reports.append(simulate(definition, cases=cases, scenario=name, seed=seed, registry=registry,
                                    progress=_updater(progress, progress.add_task(name, total=cases))))
    return reports


def _updater(progress: Progress, task: TaskID) -> Callable[[int], None]:
    def update(done: int) -> None:
        progress.update(task, completed=done)
    return update


def _heading(report: SimulationReport) -> str:
    return report.scenario.name.capitalize()


def _cases_cell(report: SimulationReport, outcome: str) -> str:
    found = report.outcome(outcome)
    if found is None:
        return "—"
    text = f"{found.count} ({found.count / report.cases:.0%})".replace("%", " %")
    return text + (f"\n[dim]{found.late} fuera de plazo[/]" if found.late else "")


def _outcomes_table(reports: Sequence[SimulationReport]) -> Table:
    table = Table(title="Tiempo de ciclo por resultado (radicación → cierre)", title_justify="left")
    table.add_column("Resultado")
    for report in reports:
        table.add_column(f"{_heading(report)}: casos", justify="right")
        table.add_column(f"{_heading(report)}: tiempo de ciclo")
    names: list[str] = []
    for report in reports:
        names += [o.outcome for o in report.outcomes if o.outcome not in names]
    for name in names:
        row = [name]
        for report in reports:
            found = report.outcome(name)
            row += [_cases_cell(report, name), found.cycle.summary if found is not None else "—"]
        table.add_row(*row)
    table.add_section()
    total = ["[bold]todos[/]"]
    for report in reports:
        total += [str(report.cycle.count), report.cycle.summary]
    table.add_row(*total)
    return table


def _figures_table(reports: Sequence[SimulationReport]) -> Table | None:
    figures = reports[0].figures
    if not figures:
        return None
    table = Table(title="Frente a las cifras del programa", title_justify="left")
    table.add_column("Indicador")
    for report in reports:
        table.add_column(f"{_heading(report)}: simulado")
        table.add_column(f"{_heading(report)}: programa", style="cyan")
    for figure in figures:
        row = [figure.label]
        for report in reports:
            measured = report.measured(figure)
            row += [measured.summary if measured is not None else "—",
                    figure.published.get(report.scenario.name, "—")]
        table.add_row(*row)
    return table


def _steps_table(reports: Sequence[SimulationReport]) -> Table:
    table = Table(title="Tiempo medio en cada paso (espera de la entidad, del funcionario o del evento)",
                  title_justify="left")
    table.add_column("Paso")
    for report in reports:
        table.add_column(_heading(report), justify="right")
    order: dict[str, str] = {}
    for report in reports:
        for step in report.steps:
            order.setdefault(step.step, step.title)
    for step_id, title in order.items():
        row = [title if title == step_id else f"{title} [dim]({step_id})[/]"]
        for report in reports:
            found = report.step(step_id)
            row.append(readable(found.waits.mean) if found is not None else "—")
        table.add_row(*row)
    return table


def _footer(report: SimulationReport) -> str:
    rate = report.cases / report.elapsed if report.elapsed > 0 else 0.0
    parts = [f"[bold]{_heading(report)}[/]" + (f" — {report.scenario.description}" if report.scenario.description
                                                else ""),
             f"  {report.sent} solicitudes, {report.faults_injected} fallas simuladas, {report.retries} reintentos"
             + (f", {report.unfinished} casos sin terminar" if report.unfinished else "")
             + f"; {report.transitions} transiciones en {report.elapsed:.1f} s ({rate:.0f} casos/s)".replace(".", ",")]
    if report.failures:
        detail = ", ".join(f"{code} ×{count}" for code, count in sorted(report.failures.items()))
        parts.append(f"  fallidos por: {detail}")
    return "\n".join(parts)


def _print(definition: ChainDefinition, reports: Sequence[SimulationReport], cases: int, seed: int) -> None:
    console.print(f"[bold]{definition.title}[/] ({definition.name} v{definition.version}): {cases} casos por "
                  f"escenario, semilla {seed}, reloj virtual", soft_wrap=True)
    console.print(_outcomes_table(reports))
    figures = _figures_table(reports)
    if figures is not None:
        console.print(figures)
    console.print(_steps_table(reports))
    for report in reports:
        console.print(_footer(report), soft_wrap=True)
    console.print("[dim]p50: mediana; p90: 9 de cada 10 casos terminan antes; 1 mes = 30 días.[/]")


def simulate_command(
    chain: Annotated[str, typer.Argument(help="Código de la cadena (p. ej. vivienda-postulacion).",
                                         show_default=False)],
    cases: Annotated[int, typer.Option("--cases", "-n", min=1, max=100_000,
                                       help="Casos simulados por escenario.")] = 200,
    scenario: Annotated[str, typer.Option(
        "--scenario", "-e", help="Escenario: actual (la situación de hoy), nuevo (la ventanilla única) o ambos, "
                                 "uno al lado del otro.")] = "nuevo",
    seed: Annotated[int, typer.Option("--seed", help="Semilla del azar: la misma semilla da el mismo resultado.")
                    ] = 2026,
    as_json: Annotated[bool, typer.Option("--json", help="Resultado en JSON para otros programas.")] = False,
) -> None:
    """Simula casos de una cadena con el motor real bajo un reloj virtual y compara los tiempos de ciclo.

    Los tiempos de cada paso, los traslados de papeles entre oficinas de la situación actual, las respuestas
    probables de cada entidad y sus fallas se declaran en la sección simulation de la definición (chains/*.yaml).
    Muestra por resultado la distribución del tiempo de ciclo (mediana, p90, máximo), el tiempo medio en cada
    paso y, al lado, las cifras que publica el programa.
    """
    definition = _definition(chain)
    try:
        model = read_model(definition)
        names = _scenarios(model, scenario)
        reports = _run(definition, names, cases=cases, seed=seed, show_progress=console.is_terminal and not as_json)
    except SimulationError as exc:
        fail(exc.code, str(exc), SCENARIO_HINT if exc.code == SCENARIO_UNKNOWN else
             "corrija la sección simulation o los bloques simulate de la cadena")
    except GelFault as exc:
        fail(str(exc.falla.code), exc.falla.message)
    if as_json:
        print_json({"cadena": definition.name, "version": definition.version, "casos": cases, "semilla": seed,
                    "escenarios": [r.to_dict() for r in reports]})
        return
    _print(definition, reports, cases, seed)
