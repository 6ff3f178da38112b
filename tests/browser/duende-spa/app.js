// The front-end of a Duende.BFF-style app, in plain browser JavaScript: the BFF owns the login, the
// cookie and the tokens; this page only ever sees claims, and sends the x-csrf header on every call.

const userUrl = "/bff/user";
const todoUrl = "/todos";

const statusText = document.getElementById("status");
const loginLink = document.getElementById("loginLink");
const logoutButtons = document.getElementById("logoutButtons");
const userList = document.getElementById("user");
const todoSection = document.getElementById("todoSection");
const todos = document.getElementById("todos");
const nameInput = document.getElementById("name");
const dateInput = document.getElementById("date");

// What /bff/user told us; the logout buttons need the sid and the bff:logout_url claims.
let currentClaims = null;

document.getElementById("createNewButton").addEventListener("click", createTodo);
document.getElementById("logoutWithSid").addEventListener("click", logoutWithSid);
document.getElementById("logoutWithClaim").addEventListener("click", logoutWithClaim);

function log(...lines) {
    const logArea = document.getElementById("log");
    logArea.textContent += lines.map(l => typeof l === "string" ? l : JSON.stringify(l)).join(" ") + "\n";
}

// The value of the first claim of a type, or undefined. /bff/user answers an array of
// { type, value } pairs, and (as in Duende.BFF) every IdP claim's value is a string.
function claim(type) {
    const found = currentClaims && currentClaims.find(c => c.type === type);
    return found ? found.value : undefined;
}

async function checkSession() {
    const req = new Request(userUrl, {
        headers: new Headers({ "x-csrf": "1" })
    });
    try {
        const resp = await fetch(req);
        if (resp.ok) {
            currentClaims = await resp.json();
            log("user logged in");
            showUser();
            await loadTodos();
        } else if (resp.status === 401) {
            log("user not logged in");
            showAnonymous();
        } else {
            log("unexpected answer from /bff/user:", resp.status);
        }
    } catch (e) {
        log("error checking user status:", e.message);
    }
}

function showAnonymous() {
    currentClaims = null;
    statusText.textContent = "not logged in";
    loginLink.hidden = false;
    logoutButtons.hidden = true;
    userList.hidden = true;
    todoSection.hidden = true;
    todos.innerHTML = "";
}

function showUser() {
    statusText.textContent = "logged in as " + claim("name");
    document.getElementById("userName").textContent = claim("name");
    document.getElementById("userSub").textContent = claim("sub");
    document.getElementById("userSid").textContent = claim("sid");
    // A string comparison, as in Duende's samples: the claim's value is "true", not true.
    const verified = currentClaims.find(c => c.type === "email_verified");
    document.getElementById("emailVerified").textContent = verified && verified.value === "true" ? "yes" : "no";
    loginLink.hidden = true;
    logoutButtons.hidden = false;
    userList.hidden = false;
    todoSection.hidden = false;
}

// Duende's documented logout: the sid claim proves the request comes from the app itself.
function logoutWithSid() {
    window.location = "/bff/logout?sid=" + encodeURIComponent(claim("sid"));
}

// Or the ready-made link the BFF hands out among the claims.
function logoutWithClaim() {
    window.location = claim("bff:logout_url");
}

// A call through the BFF's remote API proxy. A 401 means the session is gone.
async function callTodoApi(url, method, body) {
    const headers = { "x-csrf": "1" };
    if (body !== undefined) headers["content-type"] = "application/json";
    const req = new Request(url, {
        method: method,
        headers: headers,
        body: body === undefined ? undefined : JSON.stringify(body)
    });
    const resp = await fetch(req);
    if (resp.status === 401) {
        log(method, url, "→ 401, session ended");
        showAnonymous();
        return null;
    }
    if (!resp.ok) {
        log(method, url, "→", resp.status);
        return null;
    }
    log(method, url, "→", resp.status);
    return resp;
}

async function loadTodos() {
    const resp = await callTodoApi(todoUrl, "GET");
    if (!resp) return;
    const items = await resp.json();
    todos.innerHTML = "";
    items.forEach(item => addRow(item));
    todos.dataset.loaded = "true";
}

async function createTodo() {
    const resp = await callTodoApi(todoUrl, "POST", {
        name: nameInput.value,
        date: dateInput.value
    });
    if (!resp) return;
    addRow(await resp.json());
    nameInput.value = "";
}

async function saveTodo(row, item, newName) {
    const resp = await callTodoApi(todoUrl + "/" + item.id, "PUT", {
        name: newName,
        date: item.date
    });
    if (!resp) return;
    row.replaceWith(makeRow(await resp.json()));
}

async function deleteTodo(row, item) {
    const resp = await callTodoApi(todoUrl + "/" + item.id, "DELETE");
    if (!resp) return;
    row.remove();
}

function addRow(item) {
    todos.appendChild(makeRow(item));
}

function makeRow(item) {
    const row = document.createElement("tr");
    row.dataset.id = item.id;

    const nameCell = document.createElement("td");
    nameCell.className = "todo-name";
    nameCell.textContent = item.name;

    const dateCell = document.createElement("td");
    dateCell.textContent = item.date;

    const actions = document.createElement("td");
    const editButton = document.createElement("button");
    editButton.type = "button";
    editButton.textContent = "Edit";
    editButton.addEventListener("click", () => {
        // Edit in place: the name becomes an input, Edit becomes Save.
        const input = document.createElement("input");
        input.type = "text";
        input.value = item.name;
        input.setAttribute("aria-label", "New name");
        nameCell.textContent = "";
        nameCell.appendChild(input);
        const saveButton = document.createElement("button");
        saveButton.type = "button";
        saveButton.textContent = "Save";
        saveButton.addEventListener("click", () => saveTodo(row, item, input.value));
        editButton.replaceWith(saveButton);
        input.focus();
    });
    const deleteButton = document.createElement("button");
    deleteButton.type = "button";
    deleteButton.textContent = "Delete";
    deleteButton.addEventListener("click", () => deleteTodo(row, item));
    actions.append(editButton, " ", deleteButton);

    row.append(nameCell, dateCell, actions);
    return row;
}

checkSession();
